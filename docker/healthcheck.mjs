// Container health probe (the slim image has no curl): GET /healthz on the gateway's public
// listener, whose port is taken from GATEWAY_LISTEN. Exit 0 when it answers 200, 1 otherwise.
const port = (process.env.GATEWAY_LISTEN ?? '').split(':').pop() || '8080';
try {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(4000) });
  process.exit(res.status === 200 ? 0 : 1);
} catch {
  process.exit(1);
}
