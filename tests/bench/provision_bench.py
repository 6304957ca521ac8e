"""``make bench``: what a run of azaion.jetson.provision costs, beside a peer measured in the same run.

Three tables, each line with its ratio against its peer:

1. The whole provision playbook on one lab station (all phases; simulated flash of 1 s; as many
   flash slots as NVIDIA's massflash allows, 10) for N = 10, 50 and 100 devices: the first run,
   the flash span (the first flash tool's start to the last one's end: the work of NVIDIA's
   flash tools, image generation included, is the flash), the non-flash time per device
   ((first run - flash span) / N), and the re-run of the finished batch with its admin-API
   writes, tool calls and changed hosts. Peers: the re-run against the first run, and the
   non-flash time per device against the runbook's bash script per device (table 2).
2. The identity phase alone for 100 devices: the provision playbook with --tags identity,
   the collection's role on its own, a playbook of builtins (uri + copy), and a loop of the
   runbook's bash script (provision_device.sh). Peer: the bash loop.
3. The commands a re-run sends to the stations, 3 stations with 2 devices each, counted by a
   connection plugin that runs locally and logs each command (counting_local). Peer: the
   first run.

It asserts nothing about speed: figures are for reading. BENCH_SIZES overrides the Ns
(e.g. "10 50").
"""

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import l4t_bundle, labkit  # noqa: E402  pylint: disable=wrong-import-position
from lab.admin_api import LabAdminAPI  # noqa: E402  pylint: disable=wrong-import-position

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = [int(size) for size in os.environ.get('BENCH_SIZES', '10 50 100').split()]
IDENTITY_DEVICES = int(os.environ.get('BENCH_IDENTITY_DEVICES', '100'))
FLASH_SECONDS = 1.0
MASSFLASH_LIMIT = 10
IDENTITY = os.path.join(labkit.REPO_ROOT, 'tests', 'integration', 'playbooks', 'identity.yml')
BUILTINS = os.path.join(HERE, 'builtins_identity.yml')
BASH_SCRIPT = os.path.join(HERE, 'provision_device.sh')
FLASH_TOOLS = ('flash.sh', 'l4t_initrd_flash.sh', 'l4t_initrd_flash_internal.sh')


def ports(count):
    """``count`` ports behind hubs of 10 (1-1.1 ... 1-10.10), as a station with 100 cables has them."""
    return dict(('1-%d.%d' % (1 + number // 10, 1 + number % 10), '7523') for number in range(count))


def provision_lab(root, api, count, station='localhost'):
    lab = labkit.FactoryLab(root, ports(count), flash_seconds=FLASH_SECONDS, boot_seconds=0.05)
    lab.start_loaders(api.url)
    group_vars = dict(lab.group_vars(), jetson_station=station, jetson_flash_concurrency=min(count, MASSFLASH_LIMIT),
                      verify_health_interval=0.1, azaion_admin_api_url=api.url)
    devices = dict(('AZJN-%04d' % number, lab.host_vars(port)) for number, port in enumerate(sorted(lab.ports), 1))
    return lab, group_vars, devices


def run(inventory, token, playbook='provision.yml', env=None, forks='20', args=()):
    environment = {'AZAION_ADMIN_API_TOKEN': token, 'ANSIBLE_FORKS': forks}
    environment.update(env or {})
    # The image's default user gets a password, from a vars file as a vault would give it.
    secrets_file = os.path.join(os.path.dirname(inventory), 'secrets.json')
    if not os.path.exists(secrets_file):
        with open(secrets_file, 'w') as secrets_vars:
            json.dump({'jetson_default_user_password': secrets.token_hex(12)}, secrets_vars)
    started = time.monotonic()
    result = labkit.run_playbook(inventory, playbook=playbook, args=['-e', '@' + secrets_file] + list(args),
                                 env=environment, timeout=3600)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit('%s failed:\n%s\n%s' % (playbook, result.stdout[-4000:], result.stderr[-2000:]))
    return elapsed, labkit.play_recap(result.stdout)


def provision_table(token, bash_per_device):
    print('\n1. azaion.jetson.provision, one station, all phases, flash %.0f s, %d slots'
          % (FLASH_SECONDS, MASSFLASH_LIMIT))
    print('%5s %9s %9s %13s %11s %9s %7s %6s %8s %12s %14s' % (
        'N', 'first s', 'flash s', 'non-flash/N', 'vs bash/N', 'rerun s', 'writes', 'tools', 'changed',
        'rerun/first', 'rerun/device'))
    for count in SIZES:
        with tempfile.TemporaryDirectory() as root, LabAdminAPI(token=token) as api:
            lab, group_vars, devices = provision_lab(os.path.join(root, 'lab'), api, count)
            inventory = labkit.write_inventory(os.path.join(root, 'hosts.yml'), devices, group_vars)
            try:
                first, _recap = run(inventory, token)
                flashes = [call for call in l4t_bundle.tool_calls(lab.lab_state) if call['tool'] in FLASH_TOOLS]
                span = max(flash['end'] for flash in flashes) - min(flash['start'] for flash in flashes)
                writes, tools = api.write_count(), len(l4t_bundle.tool_calls(lab.lab_state))
                rerun, recap = run(inventory, token)
                rerun_writes = api.write_count() - writes
                rerun_tools = len(l4t_bundle.tool_calls(lab.lab_state)) - tools
            finally:
                lab.stop_loaders()
            changed = sum(1 for counts in recap.values() if counts['changed'])
            non_flash = (first - span) / count
            print('%5d %9.1f %9.1f %10.0f ms %10.1fx %9.1f %7d %6d %8d %12.2f %11.0f ms' % (
                count, first, span, non_flash * 1000, non_flash / bash_per_device, rerun, rerun_writes, rerun_tools,
                changed, rerun / first, rerun / count * 1000))


def identity_table(token):
    count = IDENTITY_DEVICES
    figures = {}
    playbooks = {'provision --tags identity': ('provision.yml', ['--tags', 'identity']),
                 'azaion.jetson.identity role': (IDENTITY, []),
                 'builtins (uri + copy)': (BUILTINS, [])}
    for name in list(playbooks) + ['bash loop (runbook)']:
        with tempfile.TemporaryDirectory() as root, LabAdminAPI(token=token) as api:
            devices = dict(('AZJN-%04d' % number, {}) for number in range(1, count + 1))
            for device in devices:
                labkit.make_rootfs(os.path.join(root, 'rootfs', device))
            inventory = labkit.write_inventory(os.path.join(root, 'hosts.yml'), devices, {
                'jetson_station': 'localhost', 'jetson_workdir': os.path.join(root, 'station'),
                'jetson_rootfs_dir': root + '/rootfs/{{ inventory_hostname }}',
                'identity_conf_owner': labkit.SERVICE_USER, 'identity_conf_group': labkit.SERVICE_USER,
                'azaion_admin_api_url': api.url})
            if name.startswith('bash'):
                started = time.monotonic()
                for device in devices:
                    subprocess.run([BASH_SCRIPT, '--serial', device, '--api-url', api.url, '--rootfs-dir',
                                    os.path.join(root, 'rootfs', device)], check=True, capture_output=True,
                                   env=dict(os.environ, AZAION_ADMIN_API_TOKEN=token))
                figures[name] = time.monotonic() - started
            else:
                playbook, args = playbooks[name]
                figures[name] = run(inventory, token, playbook=playbook, args=args)[0]
            if len(api.users()) != count:
                sys.exit('%s left %d accounts for %d devices' % (name, len(api.users()), count))
    bash = figures['bash loop (runbook)']
    print('\n2. identity phase alone, %d devices, lab admin API on loopback, first run' % count)
    print('%-28s %9s %12s %9s' % ('', 'seconds', 'per device', 'vs bash'))
    for name, seconds in figures.items():
        print('%-28s %9.1f %9.0f ms %8.1fx' % (name, seconds, seconds / count * 1000, seconds / bash))
    return bash / count


def ssh_table(token):
    stations = ('station-a', 'station-b', 'station-c')
    with tempfile.TemporaryDirectory() as root, LabAdminAPI(token=token) as api:
        labs, devices, station_hosts = [], {}, {}
        number = 0
        for station in stations:
            lab, group_vars, lab_devices = provision_lab(os.path.join(root, station), api, 2, station=station)
            labs.append(lab)
            for _name, host_vars in sorted(lab_devices.items()):
                number += 1
                devices['AZJN-%04d' % number] = dict(host_vars, jetson_station=station)
            station_hosts[station] = dict(
                (key, value) for key, value in group_vars.items()
                if key in ('jetson_workdir', 'jetson_l4t_dir', 'jetson_usb_sysfs_root', 'jetson_station_root',
                           'jetson_flash_concurrency'))
            station_hosts[station].update(ansible_connection='counting_local', ansible_python_interpreter=sys.executable)
        shared = dict((key, value) for key, value in group_vars.items() if key not in station_hosts['station-a']
                      and key != 'jetson_station')
        inventory = os.path.join(root, 'hosts.yml')
        labkit.write_inventory(inventory, devices, shared)
        with open(inventory) as inventory_file:
            document = json.load(inventory_file)
        document['stations'] = {'hosts': station_hosts}
        with open(inventory, 'w') as inventory_file:
            json.dump(document, inventory_file)
        log = os.path.join(root, 'commands.log')
        env = {'BENCH_COMMAND_LOG': log, 'ANSIBLE_CONNECTION_PLUGINS': os.path.join(HERE, 'connection_plugins'),
               'ANSIBLE_PIPELINING': 'True'}
        counts = []
        try:
            for _run in ('first', 'rerun'):
                open(log, 'w').close()
                seconds, _recap = run(inventory, token, env=env)
                with open(log) as commands:
                    counts.append((seconds, sum(1 for line in commands if line.startswith('command'))))
        finally:
            for lab in labs:
                lab.stop_loaders()
    print('\n3. commands sent to the stations (SSH commands, pipelining on), 3 stations x 2 devices')
    print('%-10s %9s %10s %13s %9s' % ('', 'seconds', 'commands', 'per station', 'vs first'))
    for name, (seconds, commands) in zip(('first run', 're-run'), counts):
        print('%-10s %9.1f %10d %13.1f %8.2fx' % (name, seconds, commands, commands / 3.0, commands / counts[0][1]))


def main():
    token = secrets.token_hex(16)
    bash_per_device = identity_table(token)
    provision_table(token, bash_per_device)
    ssh_table(token)


if __name__ == '__main__':
    main()
