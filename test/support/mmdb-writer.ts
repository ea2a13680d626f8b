// Writes a tiny MaxMind DB (.mmdb, format 2.0, IPv4, 24-bit records) for tests, so that the
// location code reads a real database file with the real reader and no data is downloaded.
// Format: https://maxmind.github.io/MaxMind-DB/ — a binary search tree over the address bits,
// 16 zero bytes, the data section, then "\xAB\xCD\xEFMaxMind.com" and the metadata map.

type Value = string | number | boolean | Value[] | { [key: string]: Value } | { uint: number; bytes: 2 | 4 | 8 };

function control(type: number, size: number): Buffer {
  const head: number[] = [];
  let sizeBits: number;
  const extra: number[] = [];
  if (size < 29) sizeBits = size;
  else if (size < 29 + 256) {
    sizeBits = 29;
    extra.push(size - 29);
  } else {
    sizeBits = 30;
    const v = size - 285;
    extra.push((v >> 8) & 0xff, v & 0xff);
  }
  if (type <= 7) head.push((type << 5) | sizeBits);
  else head.push(sizeBits, type - 7);
  return Buffer.from([...head, ...extra]);
}

function encode(v: Value): Buffer {
  if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    return Buffer.concat([control(2, b.length), b]);
  }
  if (typeof v === 'number') {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    return Buffer.concat([control(3, 8), b]);
  }
  if (typeof v === 'boolean') return control(14, v ? 1 : 0);
  if (Array.isArray(v)) return Buffer.concat([control(11, v.length), ...v.map(encode)]);
  if ('uint' in v && typeof v.uint === 'number' && 'bytes' in v) {
    const { uint, bytes } = v as { uint: number; bytes: 2 | 4 | 8 };
    const b = Buffer.alloc(bytes);
    if (bytes === 2) b.writeUInt16BE(uint);
    else if (bytes === 4) b.writeUInt32BE(uint);
    else b.writeBigUInt64BE(BigInt(uint));
    return Buffer.concat([control(bytes === 2 ? 5 : bytes === 4 ? 6 : 9, bytes), b]);
  }
  const entries = Object.entries(v as Record<string, Value>);
  return Buffer.concat([control(7, entries.length), ...entries.flatMap(([k, val]) => [encode(k), encode(val)])]);
}

export interface Network {
  /** An IPv4 network, e.g. `198.51.100.0/24`. */
  cidr: string;
  data: Record<string, Value>;
}

/** A City-style record: what GeoLite2-City has for one network. */
export function cityRecord(country: string, city: string, lat: number, lon: number): Record<string, Value> {
  return {
    city: { names: { en: city } },
    country: { iso_code: country, names: { en: country } },
    location: { latitude: lat, longitude: lon },
  };
}

export function buildMmdb(networks: Network[]): Buffer {
  type Slot = number | { data: number } | null;
  const nodes: Array<[Slot, Slot]> = [[null, null]];
  const chunks: Buffer[] = [];
  let dataLength = 0;
  for (const n of networks) {
    const [addr, bitsText] = n.cidr.split('/') as [string, string];
    const prefix = Number(bitsText);
    const ip = addr.split('.').reduce((acc, o) => (acc << 8) + Number(o), 0) >>> 0;
    const encoded = encode(n.data);
    const offset = dataLength;
    chunks.push(encoded);
    dataLength += encoded.length;
    let node = 0;
    for (let i = 0; i < prefix; i++) {
      const bit = (ip >>> (31 - i)) & 1;
      const pair = nodes[node] as [Slot, Slot];
      if (i === prefix - 1) {
        pair[bit] = { data: offset };
        break;
      }
      const next = pair[bit];
      if (typeof next === 'number') node = next;
      else {
        nodes.push([null, null]);
        pair[bit] = nodes.length - 1;
        node = nodes.length - 1;
      }
    }
  }
  const count = nodes.length;
  const record = (s: Slot): number => (s === null ? count : typeof s === 'number' ? s : count + 16 + s.data);
  const tree = Buffer.alloc(count * 6);
  nodes.forEach(([l, r], i) => {
    tree.writeUIntBE(record(l), i * 6, 3);
    tree.writeUIntBE(record(r), i * 6 + 3, 3);
  });
  const metadata = encode({
    node_count: { uint: count, bytes: 4 },
    record_size: { uint: 24, bytes: 2 },
    ip_version: { uint: 4, bytes: 2 },
    database_type: 'Tessera-Test-City',
    languages: ['en'],
    binary_format_major_version: { uint: 2, bytes: 2 },
    binary_format_minor_version: { uint: 0, bytes: 2 },
    build_epoch: { uint: 1_767_225_600, bytes: 8 },
    description: { en: 'Tessera test database' },
  });
  return Buffer.concat([tree, Buffer.alloc(16), ...chunks, Buffer.from([0xab, 0xcd, 0xef]), Buffer.from('MaxMind.com'), metadata]);
}
