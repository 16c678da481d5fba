import { loadModule, parseSync } from 'libpg-query';

/**
 * ptrack's statements, recognised by PostgreSQL's own parser (libpg_query, compiled to WebAssembly):
 * the exact shapes pg_probackup 2.5 sends and the plain SELECTs a person types in psql. A statement
 * that is not one of them — one that also reads a table, calls another function, or names another
 * schema — is not ours, and goes to the server unchanged.
 */
export type PtrackStatement =
  /** pg_probackup's `SELECT extnamespace::regnamespace, extversion FROM pg_catalog.pg_extension WHERE extname = 'ptrack'::name` */
  | { readonly kind: 'extension' }
  /** `SHOW ptrack.map_size` */
  | { readonly kind: 'map-size' }
  /** `SELECT <schema>.ptrack_version()` / `ptrack_init_lsn()`, maybe with an alias */
  | { readonly kind: 'scalar'; readonly fn: ScalarFunction; readonly column: string }
  /** `SELECT <columns> FROM <schema>.ptrack_get_pagemapset(<lsn>) [ORDER BY …] [LIMIT n] [OFFSET n]` */
  | {
      readonly kind: 'table';
      readonly fn: TableFunction;
      /** `$1`, or the LSN given as a string literal */
      readonly argument: { readonly param: number } | { readonly literal: string };
      /** Output columns: the function's column each one reads, and its name in the result. */
      readonly columns: readonly { readonly source: string; readonly name: string }[];
      readonly orderBy: readonly { readonly column: number; readonly descending: boolean }[];
      readonly limit: number | null;
      readonly offset: number | null;
    };

export type ScalarFunction = 'ptrack_version' | 'ptrack_init_lsn';
export type TableFunction = 'ptrack_get_pagemapset' | 'ptrack_get_change_stat';

/** Each table function's columns, in order, as ptrack 2.4 declares them. */
export const TABLE_COLUMNS: Record<TableFunction, readonly string[]> = {
  ptrack_get_pagemapset: ['path', 'pagecount', 'pagemap'],
  ptrack_get_change_stat: ['files', 'pages', 'size, MB'],
};

const EXTENSION_QUERY =
  "SELECT extnamespace::regnamespace, extversion FROM pg_catalog.pg_extension WHERE extname = 'ptrack'::name";

let extensionShape: string | undefined;

/** Loads the parser (WebAssembly, a few tens of ms); once, before the first recognise(). */
export async function loadStatementParser(): Promise<void> {
  await loadModule();
  extensionShape = shape(parseSync(EXTENSION_QUERY));
}

/** What a statement asks of ptrack, or null when it is not one of ptrack's statements (then: relay it). */
export function recognise(sql: string, schema: string): PtrackStatement | null {
  // A cheap gate before the parser: a statement with no "ptrack" in it cannot name ptrack's functions,
  // so ordinary traffic pays one substring search and nothing else.
  if (!/ptrack/i.test(sql)) return null;
  let tree: { stmts?: { stmt?: AstNode }[] };
  try {
    tree = parseSync(sql);
  } catch {
    return null; // the server reports its own syntax errors
  }
  if (tree.stmts?.length !== 1) return null;
  const stmt = tree.stmts[0].stmt;
  const show = child(stmt, 'VariableShowStmt');
  if (show) return show.name === 'ptrack.map_size' ? { kind: 'map-size' } : null;
  const select = child(stmt, 'SelectStmt');
  if (!select) return null;
  if (shape(tree) === extensionShape) return { kind: 'extension' };
  const allowed = new Set([
    'targetList',
    'fromClause',
    'sortClause',
    'limitCount',
    'limitOffset',
    'limitOption',
    'op',
  ]);
  if (Object.keys(select).some((k) => !allowed.has(k)) || select.op !== 'SETOP_NONE') return null;
  const from = list(select.fromClause);
  return from.length === 0
    ? scalar(select, schema)
    : from.length === 1
      ? table(select, from[0], schema)
      : null;
}

type AstNode = Record<string, unknown>;

/** The node under `kind` when `node` is exactly a `{ kind: … }` wrapper. */
function child(node: unknown, kind: string): AstNode | undefined {
  if (typeof node !== 'object' || node === null) return undefined;
  const keys = Object.keys(node);
  return keys.length === 1 && keys[0] === kind ? ((node as AstNode)[kind] as AstNode) : undefined;
}

const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** A parse tree with the source locations left out: equal shapes are the same statement. */
function shape(tree: unknown): string {
  return JSON.stringify(tree, (key, value) => (key === 'location' ? undefined : value));
}

/** `[schema, name]` of a call with no star, DISTINCT, ORDER BY, FILTER or OVER. */
function functionName(node: unknown, schema: string): { name: string; args: unknown[] } | null {
  const call = child(node, 'FuncCall');
  if (!call) return null;
  const extra = Object.keys(call).filter((k) => !['funcname', 'args', 'funcformat', 'location'].includes(k));
  if (extra.length > 0 || call.funcformat !== 'COERCE_EXPLICIT_CALL') return null;
  const names = list(call.funcname).map((n) => child(n, 'String')?.sval);
  if (names.length !== 2 || names[0] !== schema || typeof names[1] !== 'string') return null;
  return { name: names[1], args: list(call.args) };
}

function scalar(select: AstNode, schema: string): PtrackStatement | null {
  const targets = list(select.targetList);
  if (targets.length !== 1 || select.sortClause || select.limitCount || select.limitOffset) return null;
  const target = child(targets[0], 'ResTarget');
  const call = functionName(target?.val, schema);
  if (!call || call.args.length > 0) return null;
  if (call.name !== 'ptrack_version' && call.name !== 'ptrack_init_lsn') return null;
  return { kind: 'scalar', fn: call.name, column: (target?.name as string | undefined) ?? call.name };
}

function table(select: AstNode, from: unknown, schema: string): PtrackStatement | null {
  const range = child(from, 'RangeFunction');
  if (!range || Object.keys(range).some((k) => k !== 'functions')) return null; // no alias, LATERAL, ORDINALITY
  const functions = list(range.functions);
  const items = list(child(functions[0], 'List')?.items);
  if (functions.length !== 1 || items.length !== 2 || Object.keys(items[1] as object).length > 0) return null;
  const call = functionName(items[0], schema);
  if (!call || (call.name !== 'ptrack_get_pagemapset' && call.name !== 'ptrack_get_change_stat')) return null;
  const fn: TableFunction = call.name;
  const argument = lsnArgument(call.args);
  const columns = outputColumns(list(select.targetList), TABLE_COLUMNS[fn]);
  if (!argument || !columns) return null;
  const orderBy: { column: number; descending: boolean }[] = [];
  for (const item of list(select.sortClause)) {
    const by = child(item, 'SortBy');
    const position = by ? sortPosition(by.node, columns) : null;
    if (!by || position === null || by.sortby_nulls !== 'SORTBY_NULLS_DEFAULT' || by.useOp) return null;
    if (
      by.sortby_dir !== 'SORTBY_DEFAULT' &&
      by.sortby_dir !== 'SORTBY_ASC' &&
      by.sortby_dir !== 'SORTBY_DESC'
    )
      return null;
    orderBy.push({ column: position, descending: by.sortby_dir === 'SORTBY_DESC' });
  }
  const limit = select.limitCount === undefined ? null : integer(select.limitCount);
  const offset = select.limitOffset === undefined ? null : integer(select.limitOffset);
  if (
    (select.limitCount !== undefined && limit === null) ||
    (select.limitOffset !== undefined && offset === null)
  )
    return null;
  if (select.limitOption !== 'LIMIT_OPTION_DEFAULT' && select.limitOption !== 'LIMIT_OPTION_COUNT')
    return null;
  return { kind: 'table', fn, argument, columns, orderBy, limit, offset };
}

/** The one argument: `$n`, or a string literal (maybe cast to pg_lsn). */
function lsnArgument(args: unknown[]): { param: number } | { literal: string } | null {
  if (args.length !== 1) return null;
  let arg = args[0];
  const cast = child(arg, 'TypeCast');
  if (cast) {
    const type = list((cast.typeName as AstNode | undefined)?.names).map((n) => child(n, 'String')?.sval);
    if (type.at(-1) !== 'pg_lsn') return null;
    arg = cast.arg;
  }
  const param = child(arg, 'ParamRef');
  if (param && typeof param.number === 'number') return { param: param.number };
  const literal = (child(arg, 'A_Const')?.sval as AstNode | undefined)?.sval;
  return typeof literal === 'string' ? { literal } : null;
}

/** `*`, or a list of the function's columns (each maybe renamed). */
function outputColumns(targets: unknown[], available: readonly string[]) {
  const columns: { source: string; name: string }[] = [];
  for (const t of targets) {
    const target = child(t, 'ResTarget');
    const fields = list(child(target?.val, 'ColumnRef')?.fields);
    if (!target || fields.length !== 1) return null;
    if (child(fields[0], 'A_Star') && targets.length === 1 && !target.name) {
      return available.map((c) => ({ source: c, name: c }));
    }
    const source = child(fields[0], 'String')?.sval;
    if (typeof source !== 'string' || !available.includes(source)) return null;
    columns.push({ source, name: (target.name as string | undefined) ?? source });
  }
  return columns.length > 0 ? columns : null;
}

/** ORDER BY an output position (1-based) or an output column's name, as a 0-based output index. */
function sortPosition(node: unknown, columns: readonly { source: string; name: string }[]): number | null {
  const position = integer(node);
  if (position !== null) return position >= 1 && position <= columns.length ? position - 1 : null;
  const fields = list(child(node, 'ColumnRef')?.fields);
  const name = fields.length === 1 ? child(fields[0], 'String')?.sval : undefined;
  const index = columns.findIndex((c) => c.name === name);
  return index >= 0 ? index : null;
}

/** A non-negative integer constant (libpg_query leaves a zero's value out: `{ ival: {} }`). */
function integer(node: unknown): number | null {
  const ival = child(node, 'A_Const')?.ival as AstNode | undefined;
  if (!ival) return null;
  const value = ival.ival ?? 0;
  return typeof value === 'number' && value >= 0 ? value : null;
}
