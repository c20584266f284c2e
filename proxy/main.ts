#!/usr/bin/env node
// CLI: pacs-gateway [--config routes.yaml] [--check]. Exit 0 ok, 1 runtime failure, 2 bad configuration/usage.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, redactConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { weakSecrets } from './config/secrets.js';
import { createGateway } from './server.js';
import { createLogger } from './ops/log.js';

const USAGE = `usage: pacs-gateway [--config FILE] [--check]
  --config FILE  routes file (default: $GATEWAY_CONFIG or ./routes.yaml)
  --check        validate the file, print the resolved routes (secrets hidden) and exit`;

function describe(config: Config): string {
  const lines = [`${config.file}: OK`, `listen ${config.server.listen.host}:${config.server.listen.port}  public ${config.server.publicUrl}`,
    `admin ${config.server.admin === false ? 'off' : `${config.server.admin.listen.host}:${config.server.admin.listen.port}`}`, 'routes (longest prefix wins):'];
  for (const r of [...config.routes].sort((a, b) => b.path.length - a.path.length)) {
    const to = r.upstream ? `${r.upstream}${r.stripPrefix ? ' (prefix stripped)' : ''}` : `static:${r.static}`;
    const exposes = r.expose === 'dicomweb' && r.dicomweb
      ? `; DICOMweb ${[...r.dicomweb.roots, ...(r.dicomweb.wadoUri ? [`${r.dicomweb.wadoUri} (WADO-URI)`] : [])].join(' ')}`
      : r.expose === 'upstream' ? '; every upstream path' : '';
    lines.push(`  ${r.path.padEnd(14)} → ${to}  [${r.name}; auth ${Array.isArray(r.auth) ? r.auth.join('+') : r.auth}${r.allow ? `; allow ${r.allow.join(', ')}` : ''}${exposes}]`);
  }
  if (config.warnings.length > 0) lines.push('warnings:', ...config.warnings.map((w) => `  - ${w}`));
  lines.push('resolved configuration:', JSON.stringify(redactConfig(config), null, 2));
  return lines.join('\n');
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({ options: { config: { type: 'string' }, check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }).values;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (args.help) { process.stdout.write(`${USAGE}\n`); return 0; }
  const file = args.config ?? process.env.GATEWAY_CONFIG ?? 'routes.yaml';
  let config: Config;
  try {
    config = loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) { process.stderr.write(`${err.message}\n`); return 2; }
    throw err;
  }
  const weak = process.env.PACS_GATEWAY_DEMO === '1' ? [] : weakSecrets(config);
  if (weak.length > 0) {
    process.stderr.write(`${config.file}: refusing weak secrets\n${weak.map((w) => `  - ${w}`).join('\n')}\n`);
    return 2;
  }
  if (args.check) { process.stdout.write(`${describe(config)}\n`); return 0; }

  const log = createLogger(config.server.logLevel);
  const gateway = createGateway(config, { logger: log });
  await gateway.listen();
  const stop = (signal: string) => {
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), config.server.timeouts.shutdown + 5000);
    force.unref();
    const exit = (code: number) => log.flush(() => process.exit(code));
    gateway.close().then(() => exit(0), () => exit(1));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return -1; // keep running
}

main().then((code) => { if (code >= 0) process.exit(code); }, (err: unknown) => {
  process.stderr.write(`pacs-gateway: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
