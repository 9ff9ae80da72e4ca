// A throwaway ed25519 key pair for a test guest's SSH. ssh2 1.17's generator strips leading zero
// bytes from the public key, so about one pair in 256 is malformed and cannot be parsed
// (mscdex/ssh2#1513): with a dozen guests a CI run, that was a flake. Such a pair is drawn again.
import { utils } from 'ssh2';

export function sshKeyPair(): { private: string; public: string } {
  for (;;) {
    const keys = utils.generateKeyPairSync('ed25519');
    if (!(utils.parseKey(keys.public) instanceof Error) && !(utils.parseKey(keys.private) instanceof Error))
      return keys;
  }
}
