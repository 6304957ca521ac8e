"""``make demo``: the main job end to end on the bundled lab.

Builds a factory station in ``build/lab``: a fake L4T bundle whose scripts take NVIDIA's real
arguments, a fake USB tree with six Jetsons in recovery mode on six ports, and one Loader per
device that boots from what was flashed to its port. Starts the lab admin API as its own
process with a fresh bearer token, runs ``azaion.jetson.provision`` over ``inventories/lab``
twice (the second run has nothing to do), prints the batch report and what each device's
storage got (never a password), and stops the lab.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import labkit  # noqa: E402  pylint: disable=wrong-import-position

LAB_DIR = os.path.join(labkit.REPO_ROOT, 'build', 'lab')
INVENTORY = os.path.join(labkit.REPO_ROOT, 'inventories', 'lab')
PORTS = {'1-1': '7523', '1-2': '7523', '1-3': '7623', '1-4': '7323', '1-5': '7423', '1-6': '7523'}
FLASH_SECONDS = 3.0


def start_admin_api(token):
    port_file = os.path.join(LAB_DIR, 'admin-api.port')
    env = dict(os.environ, LAB_ADMIN_API_TOKEN=token)
    server = subprocess.Popen([sys.executable, os.path.join(labkit.REPO_ROOT, 'tests', 'lab', 'admin_api.py'),
                               '--port-file', port_file], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not os.path.exists(port_file):
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit('the lab admin API did not start')
        time.sleep(0.05)
    with open(port_file) as port:
        return server, 'http://127.0.0.1:%d' % int(port.read())


def lab_state(url):
    with urllib.request.urlopen(url + '/_lab/state', timeout=10) as answer:
        return json.load(answer)


def main():
    if os.path.exists(LAB_DIR):
        shutil.rmtree(LAB_DIR)
    os.makedirs(LAB_DIR)
    lab = labkit.FactoryLab(LAB_DIR, PORTS, flash_seconds=FLASH_SECONDS)
    token = secrets.token_hex(16)
    server, url = start_admin_api(token)
    try:
        loaders = lab.start_loaders(url)
        with open(os.path.join(LAB_DIR, 'loaders.json'), 'w') as urls:
            json.dump(dict((port, loaders.url(port)) for port in PORTS), urls)
        env = {'AZAION_LAB_DIR': LAB_DIR, 'AZAION_ADMIN_API_URL': url, 'AZAION_ADMIN_API_TOKEN': token,
               'AZAION_LAB_DEFAULT_USER_PASSWORD': secrets.token_hex(12)}
        for run in ('first run', 'second run (nothing to do)'):
            print('=== azaion.jetson.provision over inventories/lab, %d devices on %d ports: %s'
                  % (len(PORTS), len(PORTS), run), flush=True)
            before = lab_state(url)['write_count']
            started = time.monotonic()
            result = labkit.run_playbook(INVENTORY, args=['--forks', str(len(PORTS))], env=env)
            print(result.stdout)
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                return result.returncode
            print('run took %.1f s; admin API writes during this run: %d'
                  % (time.monotonic() - started, lab_state(url)['write_count'] - before))
        users = dict((user['email'], user) for user in lab_state(url)['users'])
        print('=== what each device got (its flashed storage)')
        print('%-5s %-32s %-6s %-6s %s' % ('port', 'e-mail', 'mode', 'owner', 'password matches the account'))
        for port in PORTS:
            conf = labkit.read_device_conf(lab.storage(port))
            status = os.stat(os.path.join(lab.storage(port), 'etc', 'azaion', 'device.conf'))
            account = users.get(conf['AZAION_DEVICE_EMAIL'], {})
            print('%-5s %-32s %-6s %-6s %s' % (
                port, conf['AZAION_DEVICE_EMAIL'], oct(status.st_mode & 0o777)[2:], status.st_uid,
                'yes' if account.get('password') == conf['AZAION_DEVICE_PASSWORD'] else 'NO'))
        return 0
    finally:
        lab.stop_loaders()
        server.terminate()
        server.wait(timeout=10)


if __name__ == '__main__':
    sys.exit(main())
