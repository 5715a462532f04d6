import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backend_bases import KeyEvent, MouseEvent  # noqa: E402

from somtorch.annotation import AnnotationSet, Annotator  # noqa: E402


def _neurons(n=5, size=20):
    w = np.zeros((n, 2, size, size), np.float32)
    w[:, 0, 3:7, 3:7] = 10.0
    w[:, 0, 12:16, 12:16] = 6.0
    w[:, 1, 8:12, 8:12] = 5.0
    return w


def _disp(ax, x, y):
    return ax.transData.transform((x, y))


def _mouse(ann, name, ax, x, y, button):
    X, Y = _disp(ax, x, y)
    ev = MouseEvent(name, ann.fig.canvas, X, Y, button=button)
    ann.fig.canvas.callbacks.process(name, ev)


def _key(ann, key, ax=None):
    ax = ax if ax is not None else ann.ax_img[0]
    X, Y = _disp(ax, 10, 10)
    ann.fig.canvas.callbacks.process("key_press_event", KeyEvent("key_press_event", ann.fig.canvas, key, X, Y))


@pytest.fixture
def session(tmp_path):
    ann = Annotator(_neurons(), save=tmp_path / "a.npz")
    ann.interactive_annotate(block=False)
    ann.fig.canvas.draw()
    yield ann
    ann.close()
    plt.close("all")


def test_labels_clicks_lasso_keys_produce_prime_masks(session, tmp_path):
    ann = session
    ann.textbox.set_val("core")
    ann.textbox.set_val("lobe")
    assert ann.results.labels.names == ["core", "lobe"] and ann.textbox.text == ""
    ann.checkbox.set_active(0)                     # check "core" (prime 2)
    _mouse(ann, "button_press_event", ann.ax_img[0], 4, 4, 1)
    f = ann.current.filter(0)
    assert f[4, 4] == 2 and (f == 2).sum() == 16 and f[13, 13] == 0
    # right-drag lasso over the lower blob with both labels checked -> 6
    ann.checkbox.set_active(1)
    _mouse(ann, "button_press_event", ann.ax_img[0], 11.5, 11.5, 3)
    for x, y in [(16.5, 11.5), (16.5, 16.5), (11.5, 16.5)]:
        _mouse(ann, "motion_notify_event", ann.ax_img[0], x, y, 3)
    _mouse(ann, "button_release_event", ann.ax_img[0], 11.5, 16.4, 3)
    f = ann.current.filter(0)
    assert (f == 6).sum() == 25 and f[12, 12] == 6
    # lasso on top of the "core" region: overlap of different labels shown explicitly
    _mouse(ann, "button_press_event", ann.ax_img[0], 2.5, 2.5, 3)
    for x, y in [(4.5, 2.5), (4.5, 4.5)]:
        _mouse(ann, "motion_notify_event", ann.ax_img[0], x, y, 3)
    _mouse(ann, "button_release_event", ann.ax_img[0], 2.5, 4.5, 3)
    assert ann.current.overlap(0).any()
    assert "overlap" in ann.ax_filt[0].get_title()
    assert ann.im_overlap[0].get_array()[..., 3].max() > 0
    _key(ann, "d")                                   # undo the lasso
    assert not ann.current.overlap(0).any() and "overlap" not in ann.ax_filt[0].get_title()
    # click on channel 1 with sigma changes
    _mouse(ann, "button_press_event", ann.ax_img[1], 9, 9, 1)
    assert (ann.current.filter(1) == 6).sum() == 16
    _key(ann, "up", ann.ax_img[1])
    assert ann.sigma == 2.5
    _key(ann, "down", ann.ax_filt[1])
    _key(ann, "down", ann.ax_filt[1])
    assert ann.sigma == 1.5
    _key(ann, "u")
    assert ann.live_update is False
    # keys outside the panels are ignored
    ev = KeyEvent("key_press_event", ann.fig.canvas, "c", *ann.ax_check.transAxes.transform((0.5, 0.5)))
    ann.fig.canvas.callbacks.process("key_press_event", ev)
    assert ann.current.annotated
    expected = ann.current.filter_stack()
    _key(ann, "n")
    assert ann.index == 1 and ann.active == ["core", "lobe"]  # checkboxes carry over
    saved = AnnotationSet.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(saved[0].filter_stack(), expected)
    _key(ann, "c")
    assert not ann.current.annotated
    _key(ann, "q")
    assert ann.finished and ann.fig is None
    assert list(AnnotationSet.load(tmp_path / "a.npz")) == [0]


def test_resume_from_first_unannotated_and_single_neuron(tmp_path):
    p = tmp_path / "r.npz"
    ann = Annotator(_neurons(), save=p, labels=["core"])
    ann.interactive_annotate(block=False)
    ann.set_active(["core"])
    for _ in range(2):
        ann.click(0, 4, 4)
        ann.key("n")
    ann.key("q")
    again = Annotator(_neurons(), results=p, save=p)
    again.interactive_annotate(resume=True, block=False)
    assert again.index == 2 and again.results.labels.names == ["core"]
    again.key("b")
    assert again.index == 1
    again.close()
    one = Annotator(_neurons(), results=p, save=p)
    one.annotate_neuron(4, block=False)
    assert one.index == 4
    one.set_active(["core"])
    one.click(0, 13, 13)
    one.key("n")
    assert one.finished and sorted(AnnotationSet.load(p)) == [0, 1, 4]
    assert AnnotationSet.load(p)[4].filter(0)[13, 13] == 2


def test_figure_reused_memory_flat(tmp_path):
    ann = Annotator(_neurons(n=20), labels=["a"])
    fig = ann.interactive_annotate(block=False)
    n_artists = len(fig.findobj())
    for _ in range(19):
        ann.click(0, 4, 4)
        ann.key("n")
        assert ann.fig is fig
    fig.canvas.draw()
    assert len(fig.findobj()) == n_artists and plt.get_fignums() == [fig.number]
    ann.close()
    assert plt.get_fignums() == []


def test_command_line_single_key_and_resume(tmp_path, capsys):
    from somtorch.annotation.__main__ import main
    from somtorch.io.pink import write_som

    som = tmp_path / "som.bin"
    write_som(som, _neurons(n=6), (2, 3))
    assert main([str(som), "--labels", "core", "--no-block"]) == 0
    # single neuron by lattice key (1, 2) -> flat index 1 * 3 + 2 = 5
    saved = tmp_path / "som.bin.annotations.npz"
    s = AnnotationSet()
    s.labels.add("core")
    s.save(saved)
    assert main([str(som), "-k", "1", "2", "--no-block"]) == 0
    assert main([str(som), "-c", "--no-block"]) == 0
    assert main([str(som), "-r", str(saved), "-d", "--no-block"]) == 0
    plt.close("all")


def test_command_line_key_opens_requested_neuron(tmp_path, monkeypatch):
    from somtorch.annotation import __main__ as cli
    from somtorch.io.pink import write_som

    som = tmp_path / "som.bin"
    write_som(som, _neurons(n=6), (2, 3))
    seen = {}

    def spy(self, key, block=None):
        seen["index"] = self._resolve(key)
        seen["block"] = block
        return None

    monkeypatch.setattr(Annotator, "annotate_neuron", spy)
    cli.main([str(som), "-k", "1", "2", "--no-block"])
    assert seen == {"index": 5, "block": False}
