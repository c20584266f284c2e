// Query strings, read as upstreams read them: the one decoder behind every check that looks at
// parameter names (method overrides, tokens, repeated parameters, redaction).

/** A query component decoded as form data ("+" is a space); undefined when its escapes are malformed. */
export function decodeQueryComponent(s: string): string | undefined {
  if (!s.includes('%') && !s.includes('+')) return s;
  try { return decodeURIComponent(s.replace(/\+/g, ' ')); } catch { return undefined; }
}

/** The raw name of one `name=value` pair (the whole pair when it has no "="). */
export const rawNameOf = (pair: string): string => {
  const eq = pair.indexOf('=');
  return eq < 0 ? pair : pair.slice(0, eq);
};

/** The name a server would compare: decoded, trimmed and lower-cased (the raw name when malformed). */
export const looseNameOf = (pair: string): string => {
  const raw = rawNameOf(pair);
  return (decodeQueryComponent(raw) ?? raw).trim().toLowerCase();
};

/**
 * Cheap pre-check: `lowerName` can only be among the query's parameters when the query holds it
 * literally (in any case) or holds an escape that could spell it.
 */
const mayHold = (query: string, lowerName: string): boolean => query.includes('%') || query.includes('+') || query.toLowerCase().includes(lowerName);

/** Whether the query has a parameter named `lowerName`, in any case or percent-encoding of the name. */
export function hasParameter(query: string, lowerName: string): boolean {
  if (!query || !mayHold(query, lowerName)) return false;
  return query.split('&').some((pair) => looseNameOf(pair) === lowerName);
}

/** The query without parameters named `lowerName` (any case or percent-encoding of the name). */
export function withoutParameter(query: string, lowerName: string): string {
  if (!query || !mayHold(query, lowerName)) return query;
  return query.split('&').filter((pair) => looseNameOf(pair) !== lowerName).join('&');
}
