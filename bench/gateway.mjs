// Starts the REAL gateway from dist/ (run `npm run build` first) in front of the bench upstream:
// the same createGateway(parseConfig(yaml)) path as production, with its metrics, request ids,
// header hygiene and access log. Only the listen address, the admin listener and the log sink
// differ from a deployment.
//
// env: UPSTREAM_URL (required)
//      GATEWAY_LOG_LEVEL   default 'info' — production reality: one JSON access-log line per
//                          request, batched 4 KB at a time and written synchronously to /dev/null,
//                          the same sink (createLogSink) main.ts uses for stdout; the kernel-side
//                          cost of a real log file or pipe is left out.
//      GATEWAY_PORT        default 0 (any free port)
// Prints `READY {"url", "logLevel", "logSink", "bearer"}` — `bearer` is null or what run.mjs
// needs for the issue-3 scenarios (see the extension point below).
import http from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { parseConfig } from '../dist/proxy/config/load.js';
import { createLogger, createLogSink } from '../dist/proxy/ops/log.js';
import { createGateway } from '../dist/proxy/server.js';

const upstream = process.env.UPSTREAM_URL;
if (!upstream) { process.stderr.write('UPSTREAM_URL is required\n'); process.exit(2); }
const logLevel = process.env.GATEWAY_LOG_LEVEL || 'info';
const port = Number(process.env.GATEWAY_PORT ?? 0);

/** A routes.yaml as an operator would write it; `extra*` are already-indented YAML fragments. */
function configYaml({ extraTop = '', extraRoutes = '' } = {}) {
  return `server:
  listen: 127.0.0.1:${port}
  admin: false
  logLevel: ${logLevel}
  # wrk's 50 connections share one token: the per-user limit is counted but set above them.
  limits: { concurrencyPerUser: 1000 }
${extraTop}
routes:
  - name: pub
    path: /pub
    upstream: ${upstream}
    expose: upstream
    auth: public
${extraRoutes}`;
}

// Issue 3 scenarios: a bearer route /sec. `cachedToken` is sent on every request of the "cached"
// scenario (verified once, then served from the verified-token cache); `tokensFile` holds one
// distinct token per line for the "fresh" scenario, more than it can send, so each is verified.
async function bearerSetup() {
  // A minimal issuer: discovery + JWKS on loopback, keys made here. The gateway fetches the key set
  // once at start; during the run this server stays idle.
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench-es256', alg: 'ES256', use: 'sig' };
  const idp = http.createServer((req, res) => {
    const body = req.url === '/.well-known/openid-configuration' ? { issuer, jwks_uri: `${issuer}/jwks` } : req.url === '/jwks' ? { keys: [jwk] } : null;
    res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(body ?? {}));
  });
  await new Promise((r) => idp.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${idp.address().port}`;
  const mint = (i) => new SignJWT({ typ: undefined, preferred_username: `user${i}`, realm_access: { roles: ['admin'] }, azp: 'bench', scope: 'openid' })
    .setProtectedHeader({ alg: 'ES256', kid: jwk.kid, typ: 'at+jwt' })
    .setIssuer(issuer).setAudience('pacs').setSubject(`user-${i}`).setJti(`j${i}`).setIssuedAt().setExpirationTime('2h')
    .sign(privateKey);
  // Distinct tokens for the fresh scenario: more than it can send, so the verification cache never hits.
  const count = Number(process.env.BENCH_FRESH_TOKENS ?? 0); // only the fresh scenario needs them
  const started = performance.now();
  const tokens = [];
  for (let i = 0; i < count; i++) tokens.push(await mint(i));
  const tokensFile = path.join(mkdtempSync(path.join(tmpdir(), 'pgw-bench-')), 'tokens.txt');
  writeFileSync(tokensFile, `${tokens.join('\n')}\n`);
  process.stderr.write(`bench: minted ${count} ES256 tokens in ${Math.round(performance.now() - started)} ms\n`);
  return {
    extraTop: `identity:\n  issuer: ${issuer}\n  audience: pacs\n  algorithms: [ES256]\n`,
    extraRoutes: `  - name: sec\n    path: /sec\n    upstream: ${upstream}\n    expose: upstream\n    auth: [bearer]\n    allow: [admin]\n`,
    cachedToken: await mint(-1),
    ...(count > 0 ? { tokensFile } : {}),
  };
}
// ═════════════════════════════════════════════════════════════════════════════════════════════════

const bearer = await bearerSetup();
const config = parseConfig(configYaml(bearer.unavailable ? {} : bearer), 'bench/gateway.yaml', process.env);
// The same batched (4 KB), synchronous sink createLogger gives main.ts for stdout, pointed at /dev/null.
const logger = createLogger(config.server.logLevel, createLogSink('/dev/null'));
const gateway = createGateway(config, { logger });
const { url } = await gateway.listen();
// Bearer routes answer 503 until the key set is loaded: measure only a ready gateway.
while (!(await gateway.readiness()).checks.identity?.ok && !bearer.unavailable) await new Promise((r) => setTimeout(r, 20));
process.stdout.write(`READY ${JSON.stringify({
  url,
  logLevel,
  logSink: logLevel === 'silent' ? 'none' : `pino JSON at '${logLevel}' → /dev/null (4 KB batches, synchronous writes, as in production)`,
  bearer: bearer.unavailable ? { unavailable: bearer.unavailable } : { cachedToken: bearer.cachedToken, tokensFile: bearer.tokensFile },
})}\n`);
// The bench wants a prompt exit, not the graceful drain main.ts does.
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
