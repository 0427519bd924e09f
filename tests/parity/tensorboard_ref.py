"""Reference side of the TensorBoard tests, using TensorBoard's own EventAccumulator.

  tensorboard_ref.py PATH   loads PATH (an event file or a run folder) as TensorBoard does
                            and prints every scalar point, one `tag step value wall_time`
                            line each (value and wall_time as %.17g), sorted by tag then
                            step. Scalars are simple_value summaries and the scalar tensors
                            that TF2's tf.summary writes (plugin "scalars").
"""
import sys
import warnings

warnings.filterwarnings("ignore")

from tensorboard.backend.event_processing import event_accumulator as ea  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402


def main(path):
    acc = ea.EventAccumulator(path, size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    lines = []
    tags = acc.Tags()
    for tag in tags["scalars"]:
        for e in acc.Scalars(tag):
            lines.append((tag, e.step, float(e.value), e.wall_time))
    for tag in tags["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        for e in acc.Tensors(tag):
            lines.append((tag, e.step, float(tensor_util.make_ndarray(e.tensor_proto).item()), e.wall_time))
    lines.sort(key=lambda t: (t[0], t[1]))
    for tag, step, value, wall_time in lines:
        print(f"{tag} {step} {value:.17g} {wall_time:.17g}")


if __name__ == "__main__":
    main(sys.argv[1])
