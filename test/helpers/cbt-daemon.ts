// A qemu-storage-daemon with two qcow2 disks and a raw one, a QMP connection, a CbtConnector and
// an NBD writer per qcow2 disk: the setup of the CBT connector tests. Register it inside a
// describe(); its fields are replaced at each start() (a test may replace qmp and cbt too).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before } from 'node:test';
import { CbtConnector } from '../../lib/qemu/cbt-connector';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { QmpClient } from '../../lib/qemu/qmp-client';
import { createQcow2, startStorageDaemon, type StorageDaemon } from '../../lib/qemu/storage-daemon';

export class CbtDaemonBed {
  dir!: string;
  images!: string[];
  daemon!: StorageDaemon;
  qmp!: QmpClient;
  cbt!: CbtConnector;
  readonly writers = new Map<string, NbdClient>();

  /** Creates the disks of `size` bytes before the suite, starts the daemon; stops and removes all after. */
  constructor(readonly size: number) {
    before(async () => {
      this.dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'osr-cbt-'));
      const { dir } = this;
      this.images = [
        path.join(dir, 'disk0.qcow2'),
        path.join(dir, 'disk1.qcow2'),
        path.join(dir, 'disk2.raw'),
      ];
      await createQcow2(this.images[0] as string, size);
      await createQcow2(this.images[1] as string, size);
      await fs.promises.writeFile(this.images[2] as string, '');
      await fs.promises.truncate(this.images[2] as string, size);
      await this.start();
    });
    after(async () => {
      await this.stop();
      if (this.dir) await fs.promises.rm(this.dir, { recursive: true, force: true });
    });
  }

  async start(): Promise<void> {
    this.daemon = await startStorageDaemon({ stateDir: path.join(this.dir, 'state'), images: this.images });
    this.qmp = await QmpClient.connect(this.daemon.qmpSocket);
    this.cbt = new CbtConnector(this.qmp, {
      workDir: path.join(this.dir, 'work'),
      nbdSocket: this.daemon.nbdSocket,
    });
    for (const node of ['disk0', 'disk1']) {
      this.writers.set(node, await NbdClient.connect({ socket: this.daemon.nbdSocket, exportName: node }));
    }
  }

  async stop(): Promise<void> {
    for (const w of this.writers.values()) await w.close();
    this.writers.clear();
    await this.qmp?.close();
    await this.daemon?.stop();
  }
}
