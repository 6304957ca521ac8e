"""``make demo``: the main job end to end on the bundled lab.

Starts the lab admin API (a real HTTP server, as its own process, with a fresh bearer token),
prepares one staging rootfs per device of ``inventories/lab``, runs ``azaion.jetson.provision``
over that inventory, prints what each device got (never a password), and stops the lab.
Run it twice: the second run changes nothing and makes no admin-API request.
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
    if os.path.exists(os.path.join(LAB_DIR, 'rootfs')) and '--keep' not in sys.argv:
        shutil.rmtree(LAB_DIR)
    os.makedirs(LAB_DIR, exist_ok=True)
    token = secrets.token_hex(16)
    server, url = start_admin_api(token)
    try:
        devices = ['AZJN-%04d' % number for number in range(1, 7)]
        for device in devices:
            labkit.make_rootfs(os.path.join(LAB_DIR, 'rootfs', device))
        env = {'AZAION_LAB_DIR': LAB_DIR, 'AZAION_ADMIN_API_URL': url, 'AZAION_ADMIN_API_TOKEN': token}
        for run in ('first run', 'second run (nothing to do)'):
            print('=== azaion.jetson.provision over inventories/lab: %s' % run, flush=True)
            before = lab_state(url)['write_count']
            result = labkit.run_playbook(INVENTORY, env=env)
            print(result.stdout)
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                return result.returncode
            print('admin API writes during this run: %d' % (lab_state(url)['write_count'] - before))
        users = dict((user['email'], user) for user in lab_state(url)['users'])
        print('=== devices')
        print('%-10s %-32s %-6s %-8s %s' % ('serial', 'e-mail', 'mode', 'owner', 'password matches the account'))
        for device in devices:
            rootfs = os.path.join(LAB_DIR, 'rootfs', device)
            conf = labkit.read_device_conf(rootfs)
            status = os.stat(os.path.join(rootfs, 'etc', 'azaion', 'device.conf'))
            account = users.get(conf['AZAION_DEVICE_EMAIL'], {})
            print('%-10s %-32s %-6s %-8s %s' % (
                device, conf['AZAION_DEVICE_EMAIL'], oct(status.st_mode & 0o777)[2:], status.st_uid,
                'yes' if account.get('password') == conf['AZAION_DEVICE_PASSWORD'] else 'NO'))
        return 0
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == '__main__':
    sys.exit(main())
