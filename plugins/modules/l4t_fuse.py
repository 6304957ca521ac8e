#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: l4t_fuse
short_description: Burn a Jetson Orin's fuses once, dry run first, and verify them by reading them back
version_added: 1.1.0
description:
  - Burns the fuses listed in O(fuse_config) into the one Jetson in recovery mode on the
    station, with NVIDIA's C(odmfuse.sh), then reads them back with C(odmfuseread.sh) and
    compares. B(Burning fuses is irreversible.) A wrong fuse can make the module unusable.
  - Never burns twice. When the device's state file (O(state_file), phase C(fuse)) records it
    as fused, the module returns at once without running any tool or looking at the USB bus.
    When a previous run recorded that the burn had started but did not record a verified
    result (a crash, a timeout, a failed or differing read-back), the module does not burn
    again; it only reads the fuses back, records the device as fused when they match, and
    otherwise fails and asks a person to look at the device.
  - Checks its own inputs before running any tool, because C(odmfuse.sh) prints its usage
    for conflicting arguments and burns anyway. The fuse configuration must be an NVIDIA
    C(genericfuse) XML with C(MagicId="0x45535546"), name each fuse once, hold hexadecimal
    values that fit their sizes (an Orin C(SecureBootKey) is 32 bytes), name only fuses that
    Jetson Orin has (those of NVIDIA's Jetson Orin reference fuse configuration, plus
    C(OdmLock) and C(SwReserved); a misspelt name such as C(SecurityMod) is refused, naming the
    file, the fuse and the names to use) and name at least one fuse that a read-back can verify. The key files must exist, and a configuration that
    burns C(PublicKeyHash) (or C(SecureBootKey)) needs O(pkc_key) (or O(sbk_key)), without
    which the device no longer answers the read-back. O(l4t_dir) must hold C(odmfuse.sh),
    C(odmfuseread.sh) and C(<board_config>.conf).
  - C(odmfuse.sh) has no option to choose a USB port. The module scans the station's USB
    bus (O(usb_sysfs_root)) and burns nothing unless exactly one Jetson is in recovery mode
    and it is on O(usb_instance).
  - Reads the device's fuses with C(odmfuseread.sh) before its first burn, because the state
    file only knows what this station did (a device may arrive fused by another station) and
    C(odmfuse.sh) burns over fuses that are already burned (fuse bits only go from 0 to 1, so
    the device would hold neither value). The read goes without keys first; a PKC or SBK fused
    device refuses that, and the read is tried again with O(pkc_key) and O(sbk_key). When every
    fuse the read shows already holds its configured value, the device is recorded as fused
    and nothing is burned (the message names the fuses compared and those never read back).
    When every one still reads 0, the burn goes on. Otherwise (another value, or a half-burned
    device), or when the read fails, the module burns nothing, records the failure and names
    the fuses and what a person must do.
  - Then runs C(odmfuse.sh --test) (NVIDIA's dry run, which burns nothing) and burns only when
    it succeeds, with one C(odmfuse.sh) call for all fuses. The state file records the start
    of the burn before it starts.
  - Always reads the fuses back after a burn, whatever C(odmfuse.sh) returned. Its exit
    status alone cannot be trusted (it has been seen to exit 0 with nothing burned, the
    failure showing only on the serial console). C(odmfuseread.sh) reads a fixed list of
    fuses (C(PublicKeyHash), C(BootSecurityInfo), C(ArmJtagDisable), C(SecurityMode),
    C(SwReserved), C(OdmId), C(OdmLock), C(ReservedOdm0) to C(ReservedOdm7)...); the others,
    the secret key fuses (C(SecureBootKey), C(OemK1), C(OemK2), C(Kdk0)) among them, are never
    read back, so they are not compared. Every fuse it reads must read back the configured
    value (compared as numbers, so case, C(0x) and leading zeros do not matter).
  - The output of every tool goes to C(<log_dir>/<serial>-fuse-<UTC time>.log), with the
    values of secret key fuses masked. The module never reads or returns the content of the
    key files, nor the values of secret key fuses.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  l4t_dir:
    description:
      - The C(Linux_for_Tegra) working tree to run NVIDIA's tools in, on the station. The
        read-back writes C(bootloader/fuse_info.txt) inside it.
    type: path
    required: true
  fuse_config:
    description:
      - The fuse configuration to burn, an NVIDIA C(genericfuse) XML file on the station,
        passed to C(odmfuse.sh -X). Burn all fuses in one file, as NVIDIA recommends.
    type: path
    required: true
  board_config:
    description:
      - The board configuration, the name of a C(.conf) file in O(l4t_dir) without the
        suffix, for example V(jetson-orin-nano-devkit) or V(jetson-agx-orin-devkit).
      - V(auto) picks NVIDIA's developer-kit configuration for the module found in recovery
        mode on O(usb_instance) (from its USB product id). A custom carrier board needs its own
        configuration named here.
    type: str
    required: true
  chip_id:
    description:
      - The Tegra chip id passed to the tools with C(-i); V(0x23) is Orin.
    type: str
    default: '0x23'
  pkc_key:
    description:
      - The PKC key pair (C(.pem)) passed to C(odmfuse.sh) and C(odmfuseread.sh) with C(-k).
      - Needed when the device is already PKC-fused, and when O(fuse_config) burns
        C(PublicKeyHash), since the read-back then needs it. The file must exist; its
        content is never read by the module.
    type: path
  sbk_key:
    description:
      - The SBK key file passed to C(odmfuseread.sh) with C(-S).
      - Needed when the device is already SBK-fused, and when O(fuse_config) burns
        C(SecureBootKey). The file must exist; its content is never read by the module.
    type: path
  usb_instance:
    description:
      - The USB port the device is on, as C(<busnum>-<devpath>) such as V(1-3) or V(1-8.4).
      - The module refuses to run any tool unless the only Jetson in recovery mode on the
        station is on this port.
    type: str
    required: true
  usb_sysfs_root:
    description:
      - Where the station's USB devices are listed. Tests point it at a fake tree.
    type: path
    default: /sys/bus/usb/devices
  state_file:
    description:
      - The device's state file (JSON) on the station. The module reads and records the phase
        C(fuse) in it (status, times, whether the device is fused, the read-back mismatches,
        the log file). The file is created when missing.
    type: path
    required: true
  serial:
    description:
      - The device's serial, used in the name of the log file. Letters, digits, C(.), C(_)
        and C(-) only.
    type: str
    required: true
  log_dir:
    description:
      - The directory for the tools' log files on the station; created when missing.
    type: path
    required: true
  timeout:
    description:
      - Seconds each tool may run before it is killed with its whole process group.
    type: int
    default: 600
attributes:
  check_mode:
    support: full
    details:
      - In check mode the module reads the state file, checks its inputs and scans the USB bus,
        then stops. It runs no tool at all (not even the read before the burn, the C(--test) dry
        run or the read-back), burns nothing and writes nothing. Its message says what a real run
        would do; C(changed) says whether a real run could fuse.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station that has the USB cable and the L4T tree, as root (NVIDIA's tools
    need it), for one device at a time.
  - After PKC or SBK fusing, every later flash of the device must pass its keys.
  - To fuse a device whose earlier burn could not be verified, a person checks the device
    (serial console, C(odmfuseread.sh)) and, when it still needs fusing, burns it by hand with
    C(odmfuse.sh); the next run of the module reads the fuses back and records the device as
    fused when they match.
seealso:
  - name: Jetson Linux Developer Guide, Secure Boot
    description: NVIDIA's fuse configuration file and C(odmfuse.sh).
    link: https://docs.nvidia.com/jetson/archives/r36.4/DeveloperGuide/SD/Security/SecureBoot.html
'''

EXAMPLES = r'''
- name: Fuse the device on port 1-3, once (irreversible)
  become: true
  azaion.jetson.l4t_fuse:
    l4t_dir: /var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra
    fuse_config: /srv/jetson/keys/fuse_config.xml
    board_config: jetson-orin-nano-devkit
    pkc_key: /srv/jetson/keys/pkc.pem
    sbk_key: /srv/jetson/keys/sbk.key
    usb_instance: 1-3
    state_file: /var/lib/azaion-jetson/devices/AZJN-0042/state.json
    serial: AZJN-0042
    log_dir: /var/lib/azaion-jetson/logs
  register: fuse

- name: Show what happened
  ansible.builtin.debug:
    msg: "{{ fuse.msg }} (log: {{ fuse.log_path }})"

- name: Only check what would happen (runs no tool at all)
  azaion.jetson.l4t_fuse:
    l4t_dir: "{{ jetson_l4t_dir }}"
    fuse_config: "{{ jetson_fuse_config }}"
    board_config: auto
    usb_instance: "{{ jetson_usb_instance }}"
    state_file: "{{ jetson_workdir }}/devices/{{ jetson_serial }}/state.json"
    serial: "{{ jetson_serial }}"
    log_dir: "{{ jetson_workdir }}/logs"
  check_mode: true
'''

RETURN = r'''
fused:
  description:
    - Whether the device is fused as configured, verified by reading the fuses back (now or
      in the run that recorded it).
  returned: always
  type: bool
  sample: true
dry_run_ok:
  description: Whether the C(odmfuse.sh --test) dry run of this run succeeded (false when none ran).
  returned: always
  type: bool
  sample: true
mismatches:
  description:
    - The fuses whose read-back differs from O(fuse_config), in its order. Secret key fuses
      are never compared, so never listed.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The fuse's name.
      type: str
      sample: PublicKeyHash
    expected:
      description: The value in O(fuse_config).
      type: str
      sample: '0x5a5a5a5a'
    read_back:
      description: The value C(odmfuseread.sh) printed, or null when it printed none.
      type: str
      sample: '0x0'
  sample: []
log_path:
  description: The log file of the tools run by this call; null when no tool ran.
  returned: always
  type: str
  sample: /var/lib/azaion-jetson/logs/AZJN-0042-fuse-20250101T120000Z.log
commands:
  description: The commands run, in order, each as its argument list (empty when none ran).
  returned: always
  type: list
  elements: list
  sample:
    - [/var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra/odmfuse.sh, --test, -X, /srv/jetson/keys/fuse_config.xml,
       -i, '0x23', -k, /srv/jetson/keys/pkc.pem, jetson-orin-nano-devkit]
msg:
  description: What happened, for a person.
  returned: always
  type: str
  sample: fused AZJN-0042 on 1-3 and verified 2 fuses by reading them back
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._fuse import Fuser, fuse_argument_spec


def main():
    module = AnsibleModule(argument_spec=fuse_argument_spec(), supports_check_mode=True)
    Fuser(module).main()


if __name__ == '__main__':
    main()
