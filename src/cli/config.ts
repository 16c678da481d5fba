import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { UsageError } from './errors.ts';

// yargs reads --config synchronously: the YAML parser and the schema validator are required (not
// imported) the first time a config file is given, so that no other start pays for them.
const require = createRequire(import.meta.url);
let validate: ValidateFunction | undefined;

function validator(): ValidateFunction {
  const { Ajv } = require('ajv') as typeof import('ajv');
  const schema = JSON.parse(
    readFileSync(join(import.meta.dirname, '../../schemas/config.schema.json'), 'utf8'),
  );
  return new Ajv({ allErrors: true }).compile(schema);
}

/** Reads a config file (JSON, or YAML for .yaml/.yml); a file that cannot be read or parsed is a usage error. */
export function loadConfig(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(
      `could not read the config file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  try {
    return /\.ya?ml$/i.test(path) ? (require('yaml') as typeof import('yaml')).parse(text) : JSON.parse(text);
  } catch (e) {
    throw new UsageError(
      `the config file ${path} is not valid ${/\.ya?ml$/i.test(path) ? 'YAML' : 'JSON'}: ${(e as Error).message}`,
    );
  }
}

/** Validates against schemas/config.schema.json, reporting every problem at once. */
export function parseConfig(path: string, raw: unknown): Record<string, unknown> {
  validate ??= validator();
  if (!validate(raw)) {
    const problems = (validate.errors ?? []).map((e) =>
      e.keyword === 'additionalProperties'
        ? `unknown setting "${(e.params as { additionalProperty: string }).additionalProperty}"`
        : `${e.instancePath.slice(1) || 'the file'} ${e.message}`,
    );
    throw new UsageError(`the config file ${path} has ${problems.length} problem(s): ${problems.join('; ')}`);
  }
  return raw as Record<string, unknown>;
}
