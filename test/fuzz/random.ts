// Seeded, deterministic randomness for the fuzzers: the same seed gives the same inputs on every
// machine, so a finding is replayed by its seed and index alone. No dependency: xorshift128+ is
// plenty for choosing mutations.
export class Rng {
  #a: bigint;
  #b: bigint;

  constructor(seed: number) {
    // splitmix64 spreads a small seed over both words.
    let z = BigInt.asUintN(64, BigInt(seed) + 0x9e3779b97f4a7c15n);
    const next = (): bigint => {
      z = BigInt.asUintN(64, z + 0x9e3779b97f4a7c15n);
      let x = z;
      x = BigInt.asUintN(64, (x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n);
      x = BigInt.asUintN(64, (x ^ (x >> 27n)) * 0x94d049bb133111ebn);
      return x ^ (x >> 31n);
    };
    this.#a = next();
    this.#b = next() | 1n;
  }

  /** 32 random bits. */
  u32(): number {
    let s1 = this.#a;
    const s0 = this.#b;
    this.#a = s0;
    s1 ^= BigInt.asUintN(64, s1 << 23n);
    this.#b = s1 ^ s0 ^ (s1 >> 17n) ^ (s0 >> 26n);
    return Number(BigInt.asUintN(64, this.#b + s0) >> 32n);
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

/** Values that break parsers: boundaries of 8, 16, 32 and 64-bit fields, zero, one, all ones. */
export const INTERESTING_U32 = [
  0, 1, 2, 7, 8, 12, 16, 20, 0x7f, 0x80, 0xff, 0x100, 0x1ff, 0x200, 0x1000, 0xffff, 0x10000, 0x7fffffff,
  0x80000000, 0xfffffffe, 0xffffffff,
];
export const INTERESTING_U64 = [
  0n,
  1n,
  512n,
  4096n,
  0x7fffffffn,
  0xffffffffn,
  0x1_0000_0000n,
  BigInt(Number.MAX_SAFE_INTEGER),
  BigInt(Number.MAX_SAFE_INTEGER) + 1n,
  0x7fffffffffffffffn,
  0xffffffffffffffffn,
];

/** A 32-bit value: usually interesting, sometimes any. */
export function fieldU32(rng: Rng): number {
  return rng.chance(0.7) ? rng.pick(INTERESTING_U32) : rng.u32();
}

export function fieldU64(rng: Rng): bigint {
  return rng.chance(0.8) ? rng.pick(INTERESTING_U64) : (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
}

/** Byte-level mutations of a valid input: flips, interesting values, cuts, splices, repeats. */
export function mutate(rng: Rng, input: Buffer, rounds = 1 + rng.below(4)): Buffer {
  let out = Buffer.from(input);
  for (let r = 0; r < rounds; r++) {
    const at = out.length === 0 ? 0 : rng.below(out.length);
    switch (rng.below(8)) {
      case 0: // flip one bit
        if (out.length) out[at]! ^= 1 << rng.below(8);
        break;
      case 1: // an interesting byte
        if (out.length) out[at] = rng.pick([0, 1, 0x7f, 0x80, 0xff, 0x22, 0x5c, 0x0a, 0x7b, 0x7d]);
        break;
      case 2: // an interesting 32-bit big-endian value
        if (out.length >= 4) out.writeUInt32BE(fieldU32(rng), Math.min(at, out.length - 4));
        break;
      case 3: // truncate
        out = out.subarray(0, at);
        break;
      case 4: // delete a run
        out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + rng.below(16))]);
        break;
      case 5: // insert random bytes
        out = Buffer.concat([out.subarray(0, at), rng.bytes(1 + rng.below(16)), out.subarray(at)]);
        break;
      case 6: // repeat a run
        out = Buffer.concat([
          out.subarray(0, at),
          out.subarray(at, at + 1 + rng.below(64)),
          out.subarray(at),
        ]);
        break;
      default: // an interesting 64-bit value
        if (out.length >= 8) out.writeBigUInt64BE(fieldU64(rng), Math.min(at, out.length - 8));
    }
  }
  return out;
}
