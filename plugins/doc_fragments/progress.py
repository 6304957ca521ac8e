# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The live progress of the long station modules (plugin_utils/_station_watch.py on the
    # controller, module_utils/_progress.py on the station).
    DOCUMENTATION = r'''
options:
  progress_interval:
    description:
      - Every how many seconds the task shows, while it runs, which devices (or which of the
        station's trees) are in which step, for how long, the last line of each one's tool log,
        and how many are done or failed. V(0) shows nothing.
      - The module keeps that progress in C(progress-<phase>.json) in O(log_dir) while it runs
        (names, steps, times and log paths, nothing secret), and the action plugin reads it from
        the station with M(azaion.jetson.station_progress), printing one time-stamped block each
        time. Under AWX each block is a C(verbose) job event. A run that ends within the first
        interval shows nothing.
      - Not in check mode, nor in a task that is itself C(async).
    type: int
    default: 30
'''
