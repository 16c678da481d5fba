import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runPtrackd } from '../helpers/cli.ts';

describe('--config: settings from a JSON or YAML file, checked against schemas/config.schema.json', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ptrackd-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };

  it('reports every problem of a bad file at once, exits 2, and writes nothing', async () => {
    const dataDir = join(dir, 'data');
    const bad = file('bad.yaml', `slot: Bad-Name\nmap-size: big\ndata-dir: ${dataDir}\nsurprise: 1\n`);
    const r = await runPtrackd(['--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /has 3 problem\(s\): .*unknown setting "surprise".*slot must match pattern.*map-size must be integer/,
    );
    expect(existsSync(dataDir)).toBe(false);
  });

  it.each([
    ['missing.json', null, /could not read the config file .*missing\.json: ENOENT/],
    ['broken.json', '{"slot": ', /is not valid JSON/],
    ['broken.yaml', 'slot: [x', /is not valid YAML/],
  ])('%s is a usage error', async (name, text, message) => {
    const path = text === null ? join(dir, name) : file(name, text);
    const r = await runPtrackd(['sql', '--config', path, 'SELECT 1']);
    expect([r.code, message.test(r.stderr)]).toEqual([2, true]);
  });
});
