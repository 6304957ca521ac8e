# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The batch report as one HTML page: a timeline of the ports (one row per station and USB port,
a bar for each phase of each device flashed there, coloured by its outcome), then the table.

Python's standard library only (the page is written on the stations too), no script, no
outside resource: it opens from a file share or a mail attachment as it is.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from html import escape

from ansible_collections.azaion.jetson.plugins.module_utils._progress import duration

# Outcome -> (colour of its bars, what the legend calls it).
OUTCOME_COLOURS = (
    ('done', '#2e7d32', 'done'),
    ('failed', '#c62828', 'failed'),
    ('interrupted', '#ef6c00', 'interrupted'),
    ('skipped', '#9e9e9e', 'skipped'),
    ('waiting', '#90caf9', 'waiting (for a slot, or for its image group\'s generation)'),
)
COLOURS = dict((outcome, colour) for outcome, colour, _label in OUTCOME_COLOURS)
ROW_HEIGHT = 28
LABEL_WIDTH = 180
CHART_WIDTH = 900
STYLE = '''
body { font-family: sans-serif; margin: 1.5em; color: #212121; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
p.run { color: #555; margin-top: 0; }
.summary span { display: inline-block; margin-right: 1.2em; font-weight: bold; }
table { border-collapse: collapse; margin-top: 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; white-space: nowrap; }
td.error { white-space: normal; min-width: 20em; }
th { background: #f0f0f0; }
td.result-done { color: #2e7d32; } td.result-failed { color: #c62828; font-weight: bold; }
td.result-interrupted { color: #ef6c00; font-weight: bold; } td.result-pending { color: #555; }
.legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; vertical-align: middle; }
'''


def _clock(seconds):
    return time.strftime('%H:%M:%S', time.gmtime(seconds))


def timeline_bars(rows):
    """(lane, bar) pairs: a lane is 'station port', a bar a dict of device, phase, outcome,
    start and end (epoch seconds) for each phase of each row that has both times."""
    phase_bars = []
    for row in rows:
        lane = ('%s %s' % (row.get('station') or '', row.get('port') or '-')).strip()
        for phase in row.get('timeline') or []:
            if isinstance(phase.get('started'), (int, float)) and isinstance(phase.get('finished'), (int, float)):
                phase_bars.append((lane, dict(phase, serial=row['serial'])))
    return phase_bars


def timeline_svg(rows):
    """The ports over time as SVG, or '' when no phase has times."""
    phase_bars = timeline_bars(rows)
    if not phase_bars:
        return ''
    lanes = sorted(set(lane for lane, _bar in phase_bars))
    start = min(phase_bar['started'] for _lane, phase_bar in phase_bars)
    end = max(phase_bar['finished'] for _lane, phase_bar in phase_bars)
    span = max(end - start, 1.0)
    scale = CHART_WIDTH / span
    height = ROW_HEIGHT * len(lanes) + 30
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="timeline of the ports">'
             % (LABEL_WIDTH + CHART_WIDTH + 20, height)]
    for index, lane in enumerate(lanes):
        y = index * ROW_HEIGHT
        parts.append('<text x="0" y="%d" font-size="13">%s</text>' % (y + 18, escape(lane)))
        parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#e0e0e0"/>'
                     % (LABEL_WIDTH, y + ROW_HEIGHT - 2, LABEL_WIDTH + CHART_WIDTH, y + ROW_HEIGHT - 2))
    for lane, phase_bar in phase_bars:
        y = lanes.index(lane) * ROW_HEIGHT + 4
        x = LABEL_WIDTH + (phase_bar['started'] - start) * scale
        width = max((phase_bar['finished'] - phase_bar['started']) * scale, 2.0)
        outcome = phase_bar.get('status') if phase_bar.get('status') in COLOURS else 'done'
        title = '%s %s: %s, %s to %s (%s)' % (phase_bar['serial'], phase_bar['phase'], outcome, _clock(phase_bar['started']),
                                              _clock(phase_bar['finished']), duration(phase_bar['finished'] - phase_bar['started']))
        parts.append('<rect class="bar %s" data-serial="%s" data-phase="%s" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s">'
                     '<title>%s</title></rect>' % (outcome, escape(phase_bar['serial']), escape(phase_bar['phase']), x, y, width,
                                                   ROW_HEIGHT - 10, COLOURS[outcome], escape(title)))
        if width > 60:
            parts.append('<text x="%.1f" y="%d" font-size="11" fill="#fff">%s</text>'
                         % (x + 3, y + 14, escape('%s %s' % (phase_bar['serial'], phase_bar['phase']))))
    axis_y = ROW_HEIGHT * len(lanes) + 18
    for tick in range(5):
        at = start + span * tick / 4.0
        parts.append('<text x="%.1f" y="%d" font-size="11" fill="#555">%s</text>'
                     % (LABEL_WIDTH + CHART_WIDTH * tick / 4.0 - (30 if tick == 4 else 0), axis_y, _clock(at)))
    parts.append('</svg>')
    return '\n'.join(parts)


def render_html(batch, rows, summary, phases, run, generated, generations_text=''):
    """The whole page, as text; ``generations_text`` says how many image generations the
    batch's flashes came from."""
    run = run or {}
    said = ['written %s' % generated]
    if run.get('started'):
        said.append('by the run started %s' % run['started'])
    if run.get('tags'):
        said.append('tags %s' % ','.join(run['tags']))
    if run.get('limit'):
        said.append('limit %s' % run['limit'])
    if run.get('job'):
        said.append('job %s' % run['job'])
    columns = ['serial', 'station', 'port', 'board', 'result', 'phase'] + list(phases) + ['image', 'error', 'log']
    table = ['<table><tr>%s</tr>' % ''.join('<th>%s</th>' % escape(column) for column in columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            css = {'result': ' class="result-%s"' % escape(str(value)), 'error': ' class="error"'}.get(column, '')
            cells.append('<td%s>%s</td>' % (css, escape('' if value is None else str(value))))
        table.append('<tr data-serial="%s">%s</tr>' % (escape(row['serial']), ''.join(cells)))
    table.append('</table>')
    legend = ''.join('<span><i style="background:%s"></i>%s</span>' % (colour, escape(label))
                     for _outcome, colour, label in OUTCOME_COLOURS)
    counts = ''.join('<span class="%s">%s %s</span>' % (key, summary.get(key, 0), key)
                     for key in ('done', 'failed', 'interrupted', 'pending'))
    if summary.get('generated_devices'):
        counts += '<span class="generations">%s</span>' % escape(generations_text)
    svg = timeline_svg(rows)
    return '\n'.join([
        '<!DOCTYPE html>',
        '<html lang="en"><head><meta charset="utf-8">',
        '<title>Batch report %s</title>' % escape(batch),
        '<style>%s</style></head><body>' % STYLE,
        '<h1>Batch %s: %d devices</h1>' % (escape(batch), summary.get('total', len(rows))),
        '<p class="run">%s</p>' % escape(', '.join(said)),
        '<p class="summary">%s</p>' % counts,
        '<h2>The ports over time</h2>',
        '<p class="legend">%s</p>' % legend,
        svg or '<p>No phase has run yet.</p>',
        '<h2>The devices</h2>',
        '\n'.join(table),
        '</body></html>',
        '',
    ])
