/**
 * A small zip writer and reader (PKWARE APPNOTE: local headers, central directory, end record; stored or
 * deflated with node:zlib), so packaging needs neither a `zip` binary on the CI machine nor a dependency.
 * No zip64: an archive over 65,535 entries or 4 GiB is refused with a `ZipError` rather than written wrong.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { deflateRawSync, inflateRawSync } from 'node:zlib';

export type ZipErrorCode = 'zip_limit' | 'zip_corrupt';

export class ZipError extends Error {
  constructor(
    readonly code: ZipErrorCode,
    message: string,
    options?: { readonly cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ZipError';
  }
}

export interface ZipSource {
  /** Path inside the archive, with forward slashes. */
  readonly name: string;
  readonly data: Buffer;
  /** Unix permission bits; 0o644 by default. */
  readonly mode?: number;
}

export interface ZipEntry {
  readonly name: string;
  /** 0 stored, 8 deflated. */
  readonly method: number;
  readonly crc32: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(data: Buffer): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = (CRC_TABLE[(crc ^ (data[i] ?? 0)) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const MAX_ENTRIES = 0xffff;
const MAX_OFFSET = 0xffffffff;
// Every entry gets the same timestamp (1980-01-01 00:00, the earliest DOS date), so the same inputs make the
// same bytes: two packages of one commit can be compared by hash.
const DOS_TIME = 0;
const DOS_DATE = (0 << 9) | (1 << 5) | 1;
const UTF8_NAMES = 0x0800;
const MADE_BY_UNIX = (3 << 8) | 20;
const VERSION_NEEDED = 20;

/**
 * Writes `sources` to `file` as a zip. Each entry is deflated at `level` (0 stores everything) and stored
 * when deflating would not make it smaller. Returns the entries written.
 */
export function writeZip(file: string, sources: Iterable<ZipSource>, level = 6): ZipEntry[] {
  const fd = openSync(file, 'w');
  const entries: Array<ZipEntry & { readonly mode: number }> = [];
  let offset = 0;
  const write = (buffer: Buffer) => {
    writeSync(fd, buffer);
    offset += buffer.length;
  };
  try {
    for (const source of sources) {
      if (entries.length >= MAX_ENTRIES)
        throw new ZipError('zip_limit', `More than ${MAX_ENTRIES} entries: zip64 is not supported.`);
      const name = Buffer.from(source.name, 'utf8');
      const deflated = level > 0 ? deflateRawSync(source.data, { level }) : undefined;
      const useDeflate = deflated !== undefined && deflated.length < source.data.length;
      const body = useDeflate ? deflated : source.data;
      const entry = {
        name: source.name,
        method: useDeflate ? 8 : 0,
        crc32: crc32(source.data),
        compressedSize: body.length,
        size: source.data.length,
        localHeaderOffset: offset,
        mode: source.mode ?? 0o644,
      };
      if (offset + 30 + name.length + body.length > MAX_OFFSET)
        throw new ZipError('zip_limit', 'The archive would pass 4 GiB: zip64 is not supported.');
      const header = Buffer.alloc(30);
      header.writeUInt32LE(0x04034b50, 0);
      header.writeUInt16LE(VERSION_NEEDED, 4);
      header.writeUInt16LE(UTF8_NAMES, 6);
      header.writeUInt16LE(entry.method, 8);
      header.writeUInt16LE(DOS_TIME, 10);
      header.writeUInt16LE(DOS_DATE, 12);
      header.writeUInt32LE(entry.crc32, 14);
      header.writeUInt32LE(entry.compressedSize, 18);
      header.writeUInt32LE(entry.size, 22);
      header.writeUInt16LE(name.length, 26);
      header.writeUInt16LE(0, 28);
      write(header);
      write(name);
      write(body);
      entries.push(entry);
    }
    const directoryOffset = offset;
    for (const entry of entries) {
      const name = Buffer.from(entry.name, 'utf8');
      const record = Buffer.alloc(46);
      record.writeUInt32LE(0x02014b50, 0);
      record.writeUInt16LE(MADE_BY_UNIX, 4);
      record.writeUInt16LE(VERSION_NEEDED, 6);
      record.writeUInt16LE(UTF8_NAMES, 8);
      record.writeUInt16LE(entry.method, 10);
      record.writeUInt16LE(DOS_TIME, 12);
      record.writeUInt16LE(DOS_DATE, 14);
      record.writeUInt32LE(entry.crc32, 16);
      record.writeUInt32LE(entry.compressedSize, 20);
      record.writeUInt32LE(entry.size, 24);
      record.writeUInt16LE(name.length, 28);
      // extra length, comment length, disk number, internal attributes: all 0.
      record.writeUInt32LE(((0o100000 | entry.mode) << 16) >>> 0, 38);
      record.writeUInt32LE(entry.localHeaderOffset, 42);
      write(record);
      write(name);
    }
    const directorySize = offset - directoryOffset;
    if (offset > MAX_OFFSET)
      throw new ZipError('zip_limit', 'The archive passes 4 GiB: zip64 is not supported.');
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(entries.length, 8);
    end.writeUInt16LE(entries.length, 10);
    end.writeUInt32LE(directorySize, 12);
    end.writeUInt32LE(directoryOffset, 16);
    write(end);
  } finally {
    closeSync(fd);
  }
  return entries.map(({ mode: _mode, ...entry }) => entry);
}

/** The entries of a zip, from its central directory. */
export function readZipEntries(zip: Buffer): ZipEntry[] {
  const endAt = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (endAt < 0 || endAt + 22 > zip.length)
    throw new ZipError('zip_corrupt', 'No end of central directory record.');
  const count = zip.readUInt16LE(endAt + 10);
  let at = zip.readUInt32LE(endAt + 16);
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50)
      throw new ZipError('zip_corrupt', `Central directory record ${i} is malformed.`);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    entries.push({
      name: zip.toString('utf8', at + 46, at + 46 + nameLength),
      method: zip.readUInt16LE(at + 10),
      crc32: zip.readUInt32LE(at + 16),
      compressedSize: zip.readUInt32LE(at + 20),
      size: zip.readUInt32LE(at + 24),
      localHeaderOffset: zip.readUInt32LE(at + 42),
    });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** The contents of one entry, checked against its CRC. */
export function readZipEntry(zip: Buffer, entry: ZipEntry): Buffer {
  const at = entry.localHeaderOffset;
  if (zip.readUInt32LE(at) !== 0x04034b50)
    throw new ZipError('zip_corrupt', `No local header for ${entry.name}.`);
  const start = at + 30 + zip.readUInt16LE(at + 26) + zip.readUInt16LE(at + 28);
  const body = zip.subarray(start, start + entry.compressedSize);
  const data = entry.method === 8 ? inflateRawSync(body) : Buffer.from(body);
  if (crc32(data) !== entry.crc32) throw new ZipError('zip_corrupt', `CRC mismatch in ${entry.name}.`);
  return data;
}
