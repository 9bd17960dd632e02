"""Dense CRF post-processing (Krähenbühl and Koltun's fully connected CRF, as DeepLab uses it).

The maths is the `pydensecrf` module, which PyPI's `pydensecrf2` (a maintained build of the
original binding, compiled from source at install) provides; this module only maps DeepLab's
parameter names onto it. Defaults: DeepLab-LargeFOV's published CRF settings (bi_w 4,
bi_xy_std 121, bi_rgb_std 5, pos_w 3, pos_xy_std 3, 10 mean-field iterations).

Another CRF implementation plugs in as any callable refine(image_bgr, probabilities) -> label
map; `DenseCRF` is the one shipped.
"""

from dataclasses import asdict, dataclass

import numpy as np

INSTALL_HINT = ("the dense CRF needs the `pydensecrf` module: .venv/bin/pip install pydensecrf2 "
                "(it compiles C++ code; tools/setup.sh installs it from requirements.txt)")


@dataclass(frozen=True)
class CrfParams:
    """DeepLab's names: bilateral (appearance) kernel weight and standard deviations in pixels and
    colour levels, Gaussian (smoothness) kernel weight and pixel standard deviation."""
    bi_w: float = 4.0
    bi_xy_std: float = 121.0
    bi_rgb_std: float = 5.0
    pos_w: float = 3.0
    pos_xy_std: float = 3.0
    iterations: int = 10

    def settings(self):
        return asdict(self)


def available() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


class DenseCRF:
    """refine(image_bgr H x W x 3 uint8, probabilities C x H x W) -> H x W uint8 labels."""

    def __init__(self, params: CrfParams = CrfParams()):
        try:
            import pydensecrf.densecrf as densecrf
        except ImportError:
            raise ImportError(INSTALL_HINT) from None
        if params.iterations < 1:
            raise ValueError(f"CRF iterations must be >= 1, got {params.iterations}")
        self._densecrf = densecrf
        self.params = params

    def inference(self, image_bgr, probabilities) -> np.ndarray:
        """C x H x W marginals after mean-field inference."""
        image = np.asarray(image_bgr)
        prob = np.asarray(probabilities, np.float32)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"the CRF needs an H x W x 3 uint8 image, got {image.shape} "
                             f"{image.dtype}")
        if prob.ndim != 3 or prob.shape[1:] != image.shape[:2]:
            raise ValueError(f"probabilities {prob.shape} do not match the image "
                             f"{image.shape[0]}x{image.shape[1]}")
        num_classes, height, width = prob.shape
        p = self.params
        crf = self._densecrf.DenseCRF2D(width, height, num_classes)
        # Unary energy = -log(probability); clipped so that a zero probability stays finite.
        unary = -np.log(np.clip(prob, 1e-8, 1.0)).reshape(num_classes, -1)
        crf.setUnaryEnergy(np.ascontiguousarray(unary, np.float32))
        crf.addPairwiseGaussian(sxy=p.pos_xy_std, compat=p.pos_w)
        rgb = np.ascontiguousarray(image[:, :, ::-1])  # DeepLab feeds RGB
        crf.addPairwiseBilateral(sxy=p.bi_xy_std, srgb=p.bi_rgb_std, rgbim=rgb, compat=p.bi_w)
        marginals = np.array(crf.inference(p.iterations), np.float32)
        return marginals.reshape(num_classes, height, width)

    def __call__(self, image_bgr, probabilities) -> np.ndarray:
        return self.inference(image_bgr, probabilities).argmax(axis=0).astype(np.uint8)
