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
  - Checks its own inputs before running any tool, because C(odmfuse.sh) burns the XML it is
    given as it is (only its non-XML path derives the key hash) and prints its usage for
    conflicting arguments and burns anyway. The fuse configuration must be an NVIDIA
    C(genericfuse) XML with C(MagicId) written exactly C("0x45535546") (C(odmfuse.sh --test)
    makes its dry run by rewriting only that spelling, so any other one burns in the dry run),
    name each fuse once, give each fuse its Orin size exactly (C(PublicKeyHash) 64 bytes;
    C(SecureBootKey), C(OemK1), C(OemK2), C(Kdk0) 32, whole; C(OdmId) 8; the others 4), name
    only fuses that Jetson Orin has (those of NVIDIA's Jetson Orin reference fuse
    configuration, plus C(OdmLock) and C(SwReserved); a misspelt name such as C(SecurityMod) is
    refused, naming the file, the fuse and the names to use) and name at least one fuse that a
    read-back can verify.
  - Checks the configuration against the keys (docs/l4t-fusing.md in the collection). Its
    C(PublicKeyHash) must be the hash of O(pkc_key) as the bundle's
    C(bootloader/tegrasign_v3.py --pubkeyhash) prints it (what C(odmfuse.sh) itself burns without
    C(-X)); C(BootSecurityInfo)'s algorithm bits must match the key type that C(ssh-keygen -l)
    tells (1 RSA-3K, 2 ECDSA P-256, 3 ECDSA P-521), its SBK bit C(0x8) is set exactly when
    C(SecureBootKey) is burned; C(SecureBootKey) must equal O(sbk_key) and needs
    C(PublicKeyHash); an O(sbk_key) for a configuration without C(SecureBootKey) is refused
    (the device stays PKC-only, and NVIDIA's tools refuse an SBK for it); C(OemK1) and C(OemK2)
    need O(ekb_file), the EKB the flash writes. Each refusal names the fuse, what was expected
    and what was found. The key files must exist, and a configuration that burns
    C(PublicKeyHash) (or C(SecureBootKey)) needs O(pkc_key) (or O(sbk_key)), without which the
    device no longer answers the read-back. O(l4t_dir) must hold C(odmfuse.sh),
    C(odmfuseread.sh), C(bootloader/tegrarcm_v2), C(bootloader/tegrasign_v3.py) and
    C(<board_config>.conf).
  - One device, and only that one, from the first tool to the last. The module holds the
    station's lock (in O(slots_dir)) that every flash slot also takes, so no flash runs while a
    device is fused. C(odmfuse.sh) has no option to choose a USB port, so before B(each) tool call
    the module scans the station's USB bus (O(usb_sysfs_root)) and stops unless exactly one
    Jetson is in recovery mode and it is on O(usb_instance). It pins the chip's identity (its
    ECID, from C(tegrarcm_v2 --uid --instance <usb_instance>)) before the first call and
    compares it after the last; a change stops everything and says so.
  - Reads the device's fuses with C(odmfuseread.sh) before its first burn, because the state
    file only knows what this station did (a device may arrive fused by another station, or
    fresh with reserved bits set). The read goes without keys first; a PKC or SBK fused device
    refuses that, and the read is tried again with O(pkc_key) (and O(sbk_key) when the
    configuration burns an SBK). Values compare as bit sets, by NVIDIA's rules. The reserved
    bits of C(BootSecurityInfo) are masked (and kept in the value burned, since the burner
    refuses to clear them); a key hash reads 0 or exactly the configured one; bits only go from
    0 to 1; C(OdmLock) bit n locks C(ReservedOdm<n>); nothing can be added once C(SecurityMode)
    is burned. When the device already holds the configuration, it is recorded as fused and
    nothing is burned. A configuration the rules forbid over what it holds, or a failed read,
    burns nothing; the failure is recorded and names the fuses.
  - Then gives C(odmfuse.sh) one file (mode 0600, in O(l4t_dir), removed afterwards) with every
    fuse in the burner's order (C(OdmLock) and C(SecurityMode) last, since the burner stops
    at the first fuse it cannot burn, and SecurityMode locks the rest), runs C(odmfuse.sh
    --test), and burns with one C(odmfuse.sh) call only when the dry run succeeds. On Orin
    C(--test) exits 0 whatever the device decides (its verdict is on the serial console), so it
    proves the host side and that the device answered. The state file records the start of a
    burn before the dry run.
  - Always reads the fuses back after a burn, whatever C(odmfuse.sh) returned. Its exit
    status alone cannot be trusted (the burner stops silently at a fuse it cannot burn,
    keeping the fuses before it). C(odmfuseread.sh) reads a fixed list of fuses
    (C(PublicKeyHash), C(BootSecurityInfo), C(ArmJtagDisable), C(SecurityMode),
    C(SwReserved), C(OdmId), C(OdmLock), C(ReservedOdm0) to C(ReservedOdm7)...); the others,
    the secret key fuses (C(SecureBootKey), C(OemK1), C(OemK2), C(Kdk0)) among them, are never
    read back, so they are not compared. Any difference is reported as a partial burn, naming
    the fuses that took and those that did not.
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
        C(PublicKeyHash), since the read-back then needs it; the configuration's
        C(PublicKeyHash) must be this key's hash. The module never returns the key.
    type: path
  sbk_key:
    description:
      - The SBK key file (NVIDIA's format, hexadecimal words) passed to C(odmfuseread.sh) with
        C(-S) when O(fuse_config) burns C(SecureBootKey), whose value must equal it. The module
        reads it only to compare it with the configuration; the value is never returned.
      - Refused when O(fuse_config) burns no C(SecureBootKey).
    type: path
  ekb_file:
    description:
      - The EKB image the flash writes to the device (C(jetson_ekb_file)). Required when
        O(fuse_config) burns C(OemK1) or C(OemK2), without which OP-TEE fails at boot.
    type: path
  slots_dir:
    description:
      - The station's flash slot directory, the flash's O(azaion.jetson.l4t_flash#module:slots_dir).
        The module holds its station lock, exclusive, while it fuses, so no flash of the station
        runs meanwhile. Without it, no lock is taken.
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
