// Files the agent must find whole after a power loss (its credential, its tracking state, its
// service): ext4 writes file data back up to 30 s late, so a machine that lost power in that time
// booted with empty files. Writes go beside, are flushed, renamed over the old file, and the
// folder's entry is flushed too: a crash leaves the old file or the new one, never half of one.
import fs from 'node:fs';
import path from 'node:path';

/** Replaces `file` with `text`, durably (mode 0600 by default: credentials and state). */
export function writeDurably(file: string, text: string, mode = 0o600): void {
  const temp = `${file}.new`;
  fs.rmSync(temp, { force: true }); // a left-over temp keeps its mode: start anew
  const fd = fs.openSync(temp, 'w', mode);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  fsyncPath(path.dirname(file));
}

/** fsync of a file or folder, and of everything under a folder when `deep`. */
export function fsyncPath(p: string, deep = false): void {
  if (deep && fs.statSync(p).isDirectory())
    for (const entry of fs.readdirSync(p)) fsyncPath(path.join(p, entry), true);
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
