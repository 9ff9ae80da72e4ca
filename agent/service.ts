// The agent as a service of its machine: a systemd unit where systemd runs, otherwise an init
// script whose supervising loop restarts the agent (and gives up when it exits with EXIT_REFUSED,
// like systemd's RestartPreventExitStatus). Enabled at boot with what the machine has.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fsyncPath } from './tracking/durable';
import { EXIT_REFUSED } from './protocol';

const UNIT = '/etc/systemd/system/osr-agent.service';
const INIT_SCRIPT = '/etc/init.d/osr-agent';

export type ServiceKind = 'systemd' | 'init-script';

export function serviceKind(): ServiceKind {
  return fs.existsSync('/run/systemd/system') ? 'systemd' : 'init-script';
}

/** The unit written where systemd runs (exported so a test can give it to systemd-analyze). */
export function systemdUnit(launcher: string): string {
  return `[Unit]
Description=Open Site Recovery Mobility agent
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=${launcher} run
Restart=always
RestartSec=5
RestartPreventExitStatus=${EXIT_REFUSED}
MemoryMax=128M

[Install]
WantedBy=multi-user.target
`;
}

function initScript(launcher: string): string {
  return `#!/bin/sh
### BEGIN INIT INFO
# Provides:          osr-agent
# Required-Start:    $network $remote_fs
# Required-Stop:     $network $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: Open Site Recovery Mobility agent
### END INIT INFO
PID=/run/osr-agent.pid
LOG=/var/log/osr-agent.log
running() { [ -f $PID ] && kill -0 "$(cat $PID)" 2>/dev/null; }
case "$1" in
start)
  running && exit 0
  # The loop leads its own session: stop ends it and the agent together.
  PID=$PID LOG=$LOG setsid sh -c 'echo $$ >$PID; while :; do ${launcher} run >>$LOG 2>&1; [ $? -eq ${EXIT_REFUSED} ] && break; sleep 5; done; rm -f $PID' \\
    </dev/null >/dev/null 2>&1 &
  ;;
stop)
  # The agent commits its change log and marks it clean on TERM: wait for it (a shutdown goes on after).
  if running; then
    pg=$(cat $PID)
    kill -TERM -"$pg" 2>/dev/null
    i=0
    while kill -0 -"$pg" 2>/dev/null && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
  fi
  rm -f $PID
  ;;
restart) "$0" stop; "$0" start ;;
status) running && echo running || { echo stopped; exit 3; } ;;
*) echo "usage: $0 start|stop|restart|status"; exit 2 ;;
esac
`;
}

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
}

/**
 * Puts what install copied (the agent and its node, beside the launcher) and the service on disk
 * before the service starts: ext4 writes file data back up to 30 s late, and a machine that lost
 * power in that time booted with an empty init script, and no agent. Only these files: a
 * machine-wide sync could stall on a busy server's other writes.
 */
function flushToDisk(launcher: string, service: string): void {
  fsyncPath(path.dirname(launcher), true);
  fsyncPath(service);
  fsyncPath(path.dirname(service));
}

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Writes the service, enables it at boot and (re)starts it. */
export function installService(launcher: string): ServiceKind {
  const kind = serviceKind();
  if (kind === 'systemd') {
    fs.writeFileSync(UNIT, systemdUnit(launcher), { mode: 0o644 });
    flushToDisk(launcher, UNIT);
    run('systemctl', ['daemon-reload']);
    run('systemctl', ['enable', 'osr-agent.service']);
    run('systemctl', ['restart', 'osr-agent.service']);
    return kind;
  }
  fs.mkdirSync('/etc/init.d', { recursive: true });
  fs.writeFileSync(INIT_SCRIPT, initScript(launcher), { mode: 0o755 });
  flushToDisk(launcher, INIT_SCRIPT);
  if (has('update-rc.d')) run('update-rc.d', ['osr-agent', 'defaults']);
  else if (has('rc-update')) run('rc-update', ['add', 'osr-agent', 'default']);
  run(INIT_SCRIPT, ['restart']);
  return kind;
}

/** Stops the service and removes it (the files of the agent stay for the caller to remove). */
export function removeService(): ServiceKind {
  const kind = serviceKind();
  if (kind === 'systemd') {
    if (fs.existsSync(UNIT)) {
      run('systemctl', ['disable', '--now', 'osr-agent.service']);
      fs.rmSync(UNIT);
      run('systemctl', ['daemon-reload']);
    }
    return kind;
  }
  if (fs.existsSync(INIT_SCRIPT)) {
    run(INIT_SCRIPT, ['stop']);
    if (has('update-rc.d')) run('update-rc.d', ['-f', 'osr-agent', 'remove']);
    fs.rmSync(INIT_SCRIPT);
  }
  return kind;
}
