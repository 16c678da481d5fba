/** Query results as psql prints them (aligned), or as CSV, TSV and JSON for scripts. */

export type OutputFormat = 'table' | 'csv' | 'tsv' | 'json';

export interface ResultSet {
  readonly columns: readonly string[];
  readonly rows: readonly (readonly unknown[])[];
}

function text(v: unknown): string {
  return v === null || v === undefined ? '' : String(v);
}

/**
 * psql's aligned format: headers centred, a `-+-` rule, numbers right-aligned and text left-aligned,
 * no trailing spaces on the last column, and a `(N rows)` footer.
 */
export function formatTable(r: ResultSet, tuplesOnly = false): string {
  const cells = r.rows.map((row) => row.map(text));
  const numeric = r.columns.map(
    (_, i) => r.rows.length > 0 && r.rows.every((row) => row[i] === null || typeof row[i] === 'number'),
  );
  const widths = r.columns.map((c, i) =>
    Math.max(tuplesOnly ? 0 : c.length, ...cells.map((row) => row[i].length)),
  );
  const last = r.columns.length - 1;
  const line = (parts: string[]) => ` ${parts.join(' | ')}`.replace(/\s+$/, '');
  const out: string[] = [];
  if (!tuplesOnly) {
    out.push(
      line(
        r.columns.map((c, i) => {
          const left = Math.floor((widths[i] - c.length) / 2);
          return ' '.repeat(left) + c + (i === last ? '' : ' '.repeat(widths[i] - c.length - left));
        }),
      ),
    );
    out.push(widths.map((w) => '-'.repeat(w + 2)).join('+'));
  }
  for (const row of cells) {
    out.push(
      line(row.map((v, i) => (numeric[i] ? v.padStart(widths[i]) : i === last ? v : v.padEnd(widths[i])))),
    );
  }
  if (!tuplesOnly) out.push(`(${r.rows.length} ${r.rows.length === 1 ? 'row' : 'rows'})`, '');
  return `${out.join('\n')}\n`;
}

/** RFC 4180: a header line, fields quoted when they hold a comma, a quote or a line break. */
export function formatCsv(r: ResultSet, tuplesOnly = false): string {
  const field = (v: unknown) => {
    const s = text(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [
    ...(tuplesOnly ? [] : [r.columns.map(field).join(',')]),
    ...r.rows.map((row) => row.map(field).join(',')),
  ];
  return lines.map((l) => `${l}\r\n`).join('');
}

/** Tab-separated, with tabs, newlines and backslashes escaped as in PostgreSQL's text COPY format. */
export function formatTsv(r: ResultSet, tuplesOnly = false): string {
  const field = (v: unknown) =>
    v === null
      ? '\\N'
      : text(v).replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
  const lines = [
    ...(tuplesOnly ? [] : [r.columns.join('\t')]),
    ...r.rows.map((row) => row.map(field).join('\t')),
  ];
  return lines.map((l) => `${l}\n`).join('');
}

/** An array of objects keyed by column name; LSNs and pagemaps are already strings. */
export function formatJson(r: ResultSet): string {
  return `${JSON.stringify(r.rows.map((row) => Object.fromEntries(r.columns.map((c, i) => [c, row[i] ?? null]))))}\n`;
}

export function formatResult(r: ResultSet, format: OutputFormat, tuplesOnly: boolean): string {
  switch (format) {
    case 'table':
      return formatTable(r, tuplesOnly);
    case 'csv':
      return formatCsv(r, tuplesOnly);
    case 'tsv':
      return formatTsv(r, tuplesOnly);
    case 'json':
      return formatJson(r);
  }
}

/** Splits a script into statements at semicolons outside quotes and comments. */
export function splitStatements(script: string): string[] {
  const out: string[] = [];
  let current = '';
  let quote: string | null = null;
  for (let i = 0; i < script.length; i++) {
    const ch = script[i];
    if (quote) {
      current += ch;
      if (ch === quote) quote = null;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      current += ch;
    } else if (ch === '-' && script[i + 1] === '-') {
      while (i < script.length && script[i] !== '\n') i++;
      current += '\n';
    } else if (ch === ';') {
      if (current.trim()) out.push(current.trim());
      current = '';
    } else {
      current += ch;
    }
  }
  if (current.trim()) out.push(current.trim());
  return out;
}
