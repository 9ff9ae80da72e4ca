// The part of the ssh2 package (1.17, pure JavaScript; its optional native crypto is not built)
// that OSR uses. ssh2 ships no types of its own.
declare module 'ssh2' {
  import type { EventEmitter } from 'node:events';
  import type { Duplex, Readable, Writable } from 'node:stream';

  export interface ConnectConfig {
    host: string;
    port?: number;
    username: string;
    privateKey?: Buffer | string;
    hostVerifier?: (key: Buffer) => boolean;
    readyTimeout?: number;
    keepaliveInterval?: number;
  }

  /** Reads the command's stdout; what is written goes to its stdin (its end is the command's EOF). */
  export interface ClientChannel extends Duplex {
    stderr: Readable;
    stdin: Writable;
  }

  export interface SFTPWrapper extends EventEmitter {
    fastPut(
      local: string,
      remote: string,
      opts: { mode?: number; step?: (transferred: number, chunk: number, total: number) => void },
      cb: (err?: Error | null) => void,
    ): void;
    end(): void;
  }

  export class Client extends EventEmitter {
    connect(config: ConnectConfig): this;
    exec(command: string, cb: (err: Error | undefined, channel: ClientChannel) => void): boolean;
    sftp(cb: (err: Error | undefined, sftp: SFTPWrapper) => void): boolean;
    end(): this;
  }

  export const utils: {
    generateKeyPairSync(type: 'ed25519'): { private: string; public: string };
    parseKey(data: Buffer | string): unknown;
  };
}
