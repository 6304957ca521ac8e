"""The HTML batch report: the timeline's lanes and phase_bars, and nothing unescaped."""

from ansible_collections.azaion.jetson.plugins.module_utils._report_html import render_html, timeline_bars


def row(serial, port, **timeline):
    return dict(serial=serial, station='station-a', port=port, result='done', phase='flash', error='', log='',
                timeline=[dict(phase=phase, status=status, started=started, finished=finished)
                          for phase, (status, started, finished) in timeline.items()])


def test_one_lane_per_station_port_and_one_bar_per_timed_phase_coloured_by_outcome():
    rows = [row('AZJN-0001', '1-1', rootfs=('done', 100.0, 110.0), flash=('failed', 120.0, 180.0)),
            row('AZJN-0002', '1-1', flash=('done', 200.0, 260.0)),  # a later wave on the same port
            row('AZJN-0003', '1-2', flash=('interrupted', 120.0, None))]  # no end: no phase_bar
    assert [(lane, phase_bar['serial'], phase_bar['phase']) for lane, phase_bar in timeline_bars(rows)] == [
        ('station-a 1-1', 'AZJN-0001', 'rootfs'), ('station-a 1-1', 'AZJN-0001', 'flash'),
        ('station-a 1-1', 'AZJN-0002', 'flash')]
    page = render_html('wave-1', rows, {'total': 3, 'done': 1, 'failed': 1}, ['rootfs', 'flash'], {'limit': 'wave1'},
                       '2026-11-30T08:00:00Z')
    assert page.count('<rect class="bar ') == 3
    assert '<rect class="bar failed" data-serial="AZJN-0001" data-phase="flash"' in page and 'fill="#c62828"' in page
    assert 'AZJN-0001 flash: failed, 00:02:00 to 00:03:00 (1m00s)' in page
    assert 'limit wave1' in page and '<h1>Batch wave-1: 3 devices</h1>' in page


def test_everything_from_the_stations_is_escaped():
    hostile = row('AZJN-0001', '1-1', flash=('failed', 1.0, 2.0))
    hostile['error'] = 'flash: <script>alert(1)</script> & more'
    page = render_html('<b>batch</b>', [hostile], {'total': 1}, ['flash'], {}, 'now')
    assert '<script>' not in page and '&lt;script&gt;alert(1)&lt;/script&gt; &amp; more' in page
    assert '<b>batch</b>' not in page
