// What the per-address limits count by (docs/security.md, "Per-address limits and IPv6"): an IPv4
// address as it is, an IPv6 address by its /64 prefix. A /64 is the smallest network an IPv6
// host is normally given (RFC 4291's interface identifiers, SLAAC, privacy addresses): one
// client picks any of its 2^64 addresses at will, so counting full IPv6 addresses would give it
// 2^64 separate budgets. An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, how a dual-stack
// socket reports an IPv4 peer) counts as its IPv4 address. Anything that is not an IP address
// (an empty string: no address known) is its own key.

import { isIPv4, isIPv6 } from 'node:net';

/** The key a per-address limit counts `ip` under: `192.0.2.1`, or `2001:db8:0:1::/64`. */
export function addressKey(ip: string): string {
  if (isIPv4(ip)) return ip;
  const zone = ip.indexOf('%');
  const bare = zone === -1 ? ip : ip.slice(0, zone);
  if (!isIPv6(bare)) return ip;
  const groups = expandIPv6(bare);
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
    return `${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`;
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (without zone), `::` and a dotted tail expanded. */
function expandIPv6(ip: string): number[] {
  let text = ip;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const h = parse(head);
  if (tail === undefined) return h;
  const t = parse(tail);
  return [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
}
