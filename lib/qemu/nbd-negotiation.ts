// The fixed-newstyle handshake of an NBD connection: options (structured replies, metadata
// contexts, export info) negotiated with NBD_OPT_GO, or NBD_OPT_EXPORT_NAME from old servers.
import type * as net from 'node:net';
import {
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO_BLOCK_SIZE,
  INFO_EXPORT,
  MAX_OPTION_REPLY,
  NBDMAGIC,
  NbdError,
  NbdProtocolError,
  OPT_EXPORT_NAME,
  OPT_GO,
  OPT_REPLY_MAGIC,
  OPT_SET_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  REP_ACK,
  REP_ERR_BIT,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
  REP_INFO,
  REP_META_CONTEXT,
  type NbdBlockSize,
} from './nbd-protocol';
import type { SocketReader } from './nbd-transport';

export interface Negotiated {
  size: number;
  flags: number;
  blockSize: NbdBlockSize;
  contexts: Map<string, number>;
  structured: boolean;
}

interface OptionReply {
  type: number;
  data: Buffer;
}

export async function handshake(
  socket: net.Socket,
  reader: SocketReader,
  exportName: string,
  wantedContexts: string[],
  label: string,
): Promise<Negotiated> {
  const broken = (kind: string, what: string): NbdProtocolError =>
    new NbdProtocolError(kind, `${label}: ${what}`);
  const hello = await reader.read(18);
  if (hello.readBigUInt64BE(0) !== NBDMAGIC || hello.readBigUInt64BE(8) !== IHAVEOPT) {
    throw broken('bad-magic', 'not a newstyle NBD server');
  }
  const serverFlags = hello.readUInt16BE(16);
  if ((serverFlags & FLAG_FIXED_NEWSTYLE) === 0) throw new NbdError(`${label}: server lacks fixed newstyle`);
  const noZeroes = (serverFlags & FLAG_NO_ZEROES) !== 0;
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (noZeroes ? FLAG_NO_ZEROES : 0));
  socket.write(clientFlags);

  const sendOption = (option: number, data: Buffer): void => {
    socket.write(Buffer.concat([optionHeader(option, data.length), data]));
  };
  const readReply = async (option: number): Promise<OptionReply> => {
    const h = await reader.read(20);
    if (h.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw broken('bad-magic', 'bad option reply magic');
    if (h.readUInt32BE(8) !== option)
      throw broken('bad-option-reply', `reply to option ${h.readUInt32BE(8)}, not ${option}`);
    const type = h.readUInt32BE(12);
    const length = h.readUInt32BE(16);
    if (length > MAX_OPTION_REPLY)
      throw broken(
        'bad-length',
        `option reply of ${length} bytes is implausible (at most ${MAX_OPTION_REPLY})`,
      );
    const data = await reader.read(length);
    return { type, data };
  };
  const optionError = (what: string, reply: OptionReply): NbdError => {
    const text = reply.data.toString('utf8');
    const kind =
      reply.type === REP_ERR_UNKNOWN ? 'no such export' : `error 0x${(reply.type >>> 0).toString(16)}`;
    return new NbdError(`${label}: ${what} refused: ${kind}${text ? ` (${text})` : ''}`);
  };

  // Structured replies let reads return holes and are required for block status.
  sendOption(OPT_STRUCTURED_REPLY, Buffer.alloc(0));
  const sr = await readReply(OPT_STRUCTURED_REPLY);
  const structured = sr.type === REP_ACK;
  if (!structured && (sr.type & REP_ERR_BIT) === 0)
    throw broken('bad-option-reply', 'odd reply to structured reply');

  const name = Buffer.from(exportName, 'utf8');
  const contexts = new Map<string, number>();
  if (wantedContexts.length > 0) {
    if (!structured)
      throw new NbdError(`${label}: server has no structured replies, so no metadata contexts`);
    const parts: Buffer[] = [u32(name.length), name, u32(wantedContexts.length)];
    for (const c of wantedContexts) {
      const cb = Buffer.from(c, 'utf8');
      parts.push(u32(cb.length), cb);
    }
    sendOption(OPT_SET_META_CONTEXT, Buffer.concat(parts));
    for (;;) {
      const r = await readReply(OPT_SET_META_CONTEXT);
      if (r.type === REP_ACK) break;
      if (r.type === REP_META_CONTEXT) {
        if (r.data.length < 5) throw broken('bad-length', `metadata context reply of ${r.data.length} bytes`);
        contexts.set(r.data.subarray(4).toString('utf8'), r.data.readUInt32BE(0));
      } else throw optionError('NBD_OPT_SET_META_CONTEXT', r);
    }
    const missing = wantedContexts.filter((c) => !contexts.has(c));
    if (missing.length > 0) {
      throw new NbdError(
        `${label}: server does not offer metadata context(s) ${missing.join(', ')} for this export`,
      );
    }
  }

  const infos = [INFO_BLOCK_SIZE];
  const infoBuf = Buffer.alloc(2 + 2 * infos.length);
  infoBuf.writeUInt16BE(infos.length, 0);
  infos.forEach((t, i) => infoBuf.writeUInt16BE(t, 2 + 2 * i));
  sendOption(OPT_GO, Buffer.concat([u32(name.length), name, infoBuf]));
  let size: number | undefined;
  let flags = 0;
  const blockSize: NbdBlockSize = { minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 };
  for (;;) {
    const r = await readReply(OPT_GO);
    if (r.type === REP_ACK) break;
    if (r.type === REP_INFO) {
      if (r.data.length < 2) throw broken('bad-length', `info reply of ${r.data.length} bytes`);
      const infoType = r.data.readUInt16BE(0);
      const need = infoType === INFO_EXPORT ? 12 : infoType === INFO_BLOCK_SIZE ? 14 : r.data.length;
      if (r.data.length !== need)
        throw broken('bad-length', `info ${infoType} of ${r.data.length} bytes, not ${need}`);
      if (infoType === INFO_EXPORT) {
        size = exportSize(r.data.readBigUInt64BE(2));
        flags = r.data.readUInt16BE(10);
      } else if (infoType === INFO_BLOCK_SIZE) {
        blockSize.minimum = r.data.readUInt32BE(2);
        blockSize.preferred = r.data.readUInt32BE(6);
        blockSize.maximum = r.data.readUInt32BE(10);
      }
      continue;
    }
    if (r.type === REP_ERR_UNSUP) {
      // Old servers: NBD_OPT_EXPORT_NAME has no reply on error, the server just closes.
      sendOption(OPT_EXPORT_NAME, name);
      const tail = await reader.read(10 + (noZeroes ? 0 : 124));
      size = exportSize(tail.readBigUInt64BE(0));
      flags = tail.readUInt16BE(8);
      break;
    }
    throw optionError(`NBD_OPT_GO for export "${exportName}"`, r);
  }
  if (size === undefined) throw broken('no-size', 'server sent no export size');
  const { minimum, preferred, maximum } = blockSize;
  // The client cuts requests by these: a zero or odd minimum would make it send nothing at all.
  if (
    !isPowerOfTwo(minimum) ||
    minimum > 65536 ||
    !isPowerOfTwo(preferred) ||
    preferred < minimum ||
    maximum < minimum ||
    maximum % minimum !== 0
  ) {
    throw broken(
      'bad-block-size',
      `block sizes minimum ${minimum}, preferred ${preferred}, maximum ${maximum} are impossible`,
    );
  }
  return { size, flags, blockSize, contexts, structured };

  function exportSize(value: bigint): number {
    if (value > BigInt(Number.MAX_SAFE_INTEGER))
      throw broken('bad-size', `export size ${value} is implausible`);
    return Number(value);
  }
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

export function optionHeader(option: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(16);
  h.writeBigUInt64BE(IHAVEOPT, 0);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(length, 12);
  return h;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}
