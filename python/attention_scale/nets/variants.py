"""The paper's network variants (SPEC section 3) and where each one's files live.

    prototxt/baseline/                          single-scale DeepLab-LargeFOV
    prototxt/scales-1-0.5/<merge>[-esupv]/      merge in max, average, attention
    prototxt/scales-1-0.75-0.5/<merge>[-esupv]/
    prototxt/solver.prototxt                    the paper's best: scales-1-0.75-0.5/attention-esupv

Each folder holds train.prototxt, test.prototxt, deploy.prototxt and solver.prototxt; Caffe's
snapshots of a variant go to snapshots/<the same relative folder>/.
"""

from dataclasses import dataclass

from . import naming

PAPER_SCALE_SETS = ((1.0, 0.5), (1.0, 0.75, 0.5))
PAPER_MERGES = ("MAX", "AVERAGE", "ATTENTION")
BEST = "scales-1-0.75-0.5/attention-esupv"


@dataclass(frozen=True)
class Variant:
    scales: tuple
    merge: object  # None for the baseline
    esupv: bool

    @property
    def folder(self) -> str:
        """"baseline" or e.g. "scales-1-0.75-0.5/attention-esupv"."""
        if self.merge is None:
            return "baseline"
        name = self.merge.lower() + ("-esupv" if self.esupv else "")
        return f"{naming.scales_slug(self.scales)}/{name}"

    def describe(self) -> str:
        if self.merge is None:
            return "single-scale DeepLab-LargeFOV baseline"
        scales = ", ".join(f"{s:g}" for s in self.scales)
        return (f"scales {{{scales}}}, {self.merge.lower()} merge"
                + (", extra supervision (E-Supv)" if self.esupv else ""))


def paper_variants():
    """The baseline, then every scale set x merge x E-Supv of the paper, in a fixed order."""
    variants = [Variant((1.0,), None, False)]
    for scales in PAPER_SCALE_SETS:
        for merge in PAPER_MERGES:
            for esupv in (False, True):
                variants.append(Variant(scales, merge, esupv))
    return variants


def find(folder) -> Variant:
    for variant in paper_variants():
        if variant.folder == folder:
            return variant
    raise KeyError(f"no variant {folder!r}; known: {', '.join(v.folder for v in paper_variants())}")
