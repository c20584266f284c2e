// Secrets a production gateway must not run with: empty, short, or a placeholder copied from an
// example. The CLI refuses to start (and --check fails) with any of them, except in the demo
// (PACS_GATEWAY_DEMO=1), and says how to make a good one.
import type { Config } from './schema.js';

/** Values people leave in place from examples and tutorials (compared without case). */
const PLACEHOLDERS = new Set(['change-me', 'changeme', 'change_me', 'secret', 'password', 'admin', 'orthanc', 'gateway', 'example', 'test', 'demo', 'default', 'xxx', 'todo']);
export const MIN_SECRET_LENGTH = 16;

function weakness(value: string): string | undefined {
  if (value.length === 0) return 'is empty';
  const base = value.toLowerCase().replace(/[-_ ]?\d*$/, '');
  if (PLACEHOLDERS.has(value.toLowerCase()) || PLACEHOLDERS.has(base)) return 'is a placeholder';
  if (value.length < MIN_SECRET_LENGTH) return `is shorter than ${MIN_SECRET_LENGTH} characters`;
  if (new Set(value).size < 4) return 'repeats too few characters';
  return undefined;
}

/** One line per weak secret: where it sits in the file, what is wrong, how to make a good one. */
export function weakSecrets(config: Config): string[] {
  const found: Array<[string, string]> = [];
  config.routes.forEach((r, i) => {
    if (r.upstreamAuth) found.push([`routes[${i}].upstreamAuth.basic.password (route ${r.name})`, r.upstreamAuth.basic.password]);
  });
  if (config.identity?.client) found.push(['identity.client.secret', config.identity.client.secret]);
  config.session?.secret.forEach((s, i) => found.push([`session.secret${config.session!.secret.length > 1 ? `[${i}]` : ''}`, s]));
  const problems: string[] = [];
  for (const [where, value] of found) {
    const why = weakness(value);
    if (why) problems.push(`${config.file}: ${where} ${why}: use a random one, e.g. openssl rand -hex 24 (the demo alone may run without: PACS_GATEWAY_DEMO=1)`);
  }
  return problems;
}
