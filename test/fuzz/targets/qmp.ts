// The QMP client against a hostile monitor: greetings and replies with malformed JSON, values
// that are not objects, unexpected ids, events mid-reply (named like EventEmitter's own events
// too), huge lines, and lines split anywhere.
import { QmpClient, QmpError, QmpProtocolError } from '../../../lib/qemu/qmp-client';
import type { FuzzTarget, Verdict } from '../harness';
import { HostileServer, split, type Turn } from '../hostile-server';
import { fieldU32, mutate, type Rng } from '../random';

const server = new HostileServer('qmp');
const GREETING =
  '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}';

function eventLine(rng: Rng): string {
  const name = rng.pick([
    'BLOCK_JOB_COMPLETED',
    'JOB_STATUS_CHANGE',
    'error',
    'close',
    'newListener',
    'event',
    '__proto__',
    '',
  ]);
  const data = rng.pick<unknown>([{ device: 'x' }, null, 5, 'str', [], undefined]);
  const timestamp = rng.pick<unknown>([{ seconds: 1, microseconds: 2 }, null, 'now', undefined]);
  return JSON.stringify({ event: name, data, timestamp });
}

function replyLine(rng: Rng, id: number): string {
  const hostile = rng.chance(0.35);
  const realId =
    hostile && rng.chance(0.4)
      ? rng.pick<unknown>([id + 1, id - 1, 0, -1, null, 'x', fieldU32(rng), undefined])
      : id;
  if (hostile && rng.chance(0.3)) {
    return rng.pick([
      'null',
      '1',
      '"str"',
      '[]',
      'true',
      '{"return": ',
      '{"return": {}, "id": 1}}',
      '{"id": 1, "error": 5}',
      '{"id": 1, "error": null}',
      '{"id": 1, "error": {"class": 7, "desc": {"x": 1}}}',
      '\u0000\u0001',
      '{"QMP": null}',
      `{"return": ${'['.repeat(5000)}${']'.repeat(5000)}, "id": ${id}}`,
    ]);
  }
  if (hostile && rng.chance(0.3))
    return JSON.stringify({ id: realId, error: { class: 'GenericError', desc: 'no' } });
  return JSON.stringify({
    id: realId,
    return: rng.pick<unknown>([{}, [], null, 'ok', { inserted: { node: 'x' } }]),
  });
}

function turns(rng: Rng): Turn[] {
  const eol = rng.chance(0.9) ? '\n' : '\r\n';
  const turnOf = (lines: string[], after: number): Turn => {
    let text: Buffer = Buffer.from(lines.join(eol) + (rng.chance(0.95) ? eol : ''), 'utf8');
    if (rng.chance(0.03)) text = Buffer.concat([text, Buffer.alloc((16 + rng.below(8)) * 1024 * 1024, 0x61)]);
    if (rng.chance(0.15)) text = mutate(rng, text);
    // Split anywhere, multi-byte characters included.
    const small = text.length < 65536;
    return { after, pieces: split(text, () => (small && rng.chance(0.5) ? 1 + rng.below(64) : text.length)) };
  };
  const greeting = rng.chance(0.85)
    ? GREETING
    : rng.pick(['NBDMAGIC', '{"QMP":', 'null', '[1]', '"QMP"', '{}', ' ', `{"QMP": 1}`]);
  const out = [turnOf([greeting], 0)];
  // The client sends one command line at a time: qmp_capabilities (id 1), then ids 2 and 3.
  for (let id = 1; id <= 3; id++) {
    const lines: string[] = [];
    while (rng.chance(0.3)) lines.push(eventLine(rng));
    lines.push(replyLine(rng, id));
    while (rng.chance(0.2)) lines.push(eventLine(rng));
    out.push(turnOf(lines, id));
  }
  return out;
}

export const qmpTarget: FuzzTarget = {
  name: 'QMP client',
  setup: () => server.start(),
  teardown: () => server.stop(),
  timeoutMs: 15_000,
  async run(rng: Rng): Promise<Verdict> {
    server.answer(turns(rng), 'lines');
    const client = await QmpClient.connect(server.socketPath, { greetingTimeoutMs: 500 });
    try {
      await client.execute('query-block');
      await client.execute('query-status');
      return 'accepted';
    } finally {
      await client.close();
    }
  },
  isTyped: (err) => err instanceof QmpError || err instanceof QmpProtocolError,
};
