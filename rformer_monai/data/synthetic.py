"""Synthetic SEM micrographs of agglomerated nanoparticles with instance-exact masks.

The generator is the project's embedded default dataset: it lets training and the tests run
on a machine without the real (licence-restricted) micrographs. Its defaults are calibrated
to the look of the BAM TiO2 SEM images (Ruehle et al., Sci. Rep. 11, 4942, 2021): bright,
irregular rounded particles of log-normal size, clustered into touching and overlapping
agglomerates, with bright rims (SEM edge effect) on a dark textured substrate, shot noise and
a slight blur. Masks follow the BAM convention: particles 255, background 0, and touching
particles separated by one-pixel background lines, so that the 4-connected components of a
mask are exactly the single visible particles.

Everything is drawn from one ``numpy.random.Generator``: the same seed gives identical arrays.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from rformer_monai.particles.labelling import separated_foreground

__all__ = [
    "SYNTHETIC_PIXEL_SIZE_NM",
    "DEFAULT_MEAN_DIAMETER_PX",
    "DEFAULT_DIAMETER_SIGMA",
    "DEFAULT_COVERAGE",
    "labels_to_mask",
    "render_micrograph",
    "render_micrograph_instances",
    "make_synthetic_dataset",
]

logger = logging.getLogger(__name__)

# --- physical scale -----------------------------------------------------------------------
SYNTHETIC_PIXEL_SIZE_NM = 7.5
"""Pixel size written into the synthetic TIFFs (nm per pixel), close to the BAM SEM's 7.344 nm."""
DEFAULT_MEAN_DIAMETER_NM = 225.0
"""Mean particle diameter (nm) of the TiO2 particles the defaults imitate."""
DEFAULT_MEAN_DIAMETER_PX = DEFAULT_MEAN_DIAMETER_NM / SYNTHETIC_PIXEL_SIZE_NM
"""Default mean particle diameter in pixels (30 px at the synthetic pixel size)."""
DEFAULT_DIAMETER_SIGMA = 0.25
"""Default log-normal sigma of the particle diameters."""
DEFAULT_COVERAGE = 0.10
"""Default particle area fraction of the sample area (the real BAM masks average about 0.1)."""
DEFAULT_IMAGE_SIZE = (512, 512)
DEFAULT_NUM_IMAGES = 24

# --- particle shapes ----------------------------------------------------------------------
MIN_DIAMETER_PX = 4.0  # smaller particles would not survive the one-pixel separation lines
MAX_ASPECT_RATIO = 1.5  # long/short axis of the elliptic base shape
FOURIER_ORDERS = (2, 3, 4, 5)  # harmonics of the radial perturbation (low order: rounded)
FOURIER_AMPLITUDE = 0.12  # mean relative amplitude of a harmonic, divided by its order
MIN_VISIBLE_AREA_PX = 12  # visible remnants smaller than this become background

# --- agglomerates ---------------------------------------------------------------------------
MEAN_CLUSTER_SIZE = 7.0  # mean number of particles per agglomerate (geometric distribution)
CONTACT_DISTANCE_RANGE = (0.7, 1.0)  # centre distance / (sum of radii) of neighbours
PLACEMENT_MARGIN_FRACTION = 0.05  # agglomerate centres may lie this far outside the image
MAX_PARTICLES_PER_TARGET = 6.0  # stop after this many times the expected particle count
MIN_PARTICLE_BUDGET = 64

# --- rendering (grey levels on the 0-255 scale) --------------------------------------------
BACKGROUND_LEVEL = 30.0
BACKGROUND_DRIFT_AMPLITUDE = 3.0  # smooth low-frequency variation
BACKGROUND_DRIFT_SIGMA_PX = 60.0  # length scale of the low-frequency variation
TEXTURE_AMPLITUDE = 22.0  # brightness of the curly substrate texture lines
TEXTURE_SIGMAS_PX = (6.0, 12.0)  # band-pass of the noise whose zero crossings draw the lines
TEXTURE_LINE_WIDTH = 0.2  # width of the lines, in units of the band-pass noise std
TEXTURE_PATCH_SIGMA_PX = 10.0  # scale of the patches where the texture lines are visible
TEXTURE_PATCH_THRESHOLD = 0.7  # higher: fewer, shorter visible line segments
PARTICLE_LEVEL_RANGE = (80.0, 150.0)  # body brightness range, drawn per particle
FACET_GRADIENT_MAX = 0.25  # relative linear brightness gradient across a particle (facets)
DOME_SHADING = 0.25  # relative darkening towards the rim on the side away from the detector
DETECTOR_ANGLE_RAD = -0.75 * np.pi  # direction (image coordinates) the rims face brightest
EDGE_GAIN = 60.0  # extra brightness at a particle's boundary (SEM edge effect)
EDGE_WIDTH_PX = 2.0  # decay length of the edge brightening inside a particle
PSF_SIGMA_PX = 0.9  # Gaussian point spread function of the beam
ELECTRONS_PER_GREY_LEVEL = 1.5  # shot-noise dose: Poisson counts per grey level
READ_NOISE_STD = 2.0  # additive Gaussian noise of the detector chain
SCAN_BLUR_SIGMA_PX = 0.5  # detector bandwidth along the scan line (x)

# --- data bar ---------------------------------------------------------------------------------
DATA_BAR_LEVEL = 6.0  # grey level of the near-black strip
DATA_BAR_NOISE_STD = 2.0
GLYPH_LEVEL = 240.0  # grey level of text and scale bar
GLYPH_SHAPE = (7, 5)  # rows, columns of a character bitmap
GLYPH_FILL_PROBABILITY = 0.45
GLYPH_HEIGHT_FRACTION = 0.22  # character height relative to the bar height
TEXT_LINE_POSITIONS = (0.2, 0.6)  # top of each text line relative to the bar height
TEXT_WIDTH_FRACTION = 0.78  # text columns stop here; the scale bar sits to the right
WORD_LENGTH_RANGE = (2, 9)  # characters per word (upper bound exclusive)
WORD_GAP_RANGE = (1, 5)  # spaces between words (upper bound exclusive)
SCALE_BAR_X_FRACTION = (0.86, 0.92)  # left and right end of the scale bar
SCALE_BAR_Y_FRACTION = 0.55  # vertical position of the scale bar line

# --- dataset layout ----------------------------------------------------------------------------
IMAGES_DIRNAME = "images"
MASKS_DIRNAME = "masks"
PARAMETERS_FILENAME = "synthetic.json"
IMAGE_NAME_TEMPLATE = "synthetic_{index:03d}.tif"
MASK_NAME_TEMPLATE = "synthetic_{index:03d}_mask.tif"
GENERATOR_VERSION = 1  # bump whenever the rendering changes, so cached datasets regenerate
TIFF_COMPRESSION = "zlib"
TIFF_COMPRESSION_LEVEL = 1  # fastest: noisy images barely compress at higher levels anyway
NM_PER_CM = 1e7
MASK_FOREGROUND = 255
UINT8_MAX = 255


def labels_to_mask(labels: np.ndarray) -> np.ndarray:
    """Binary particle mask with one-pixel background lines between touching particles.

    A particle pixel is set to background when its right or lower 4-neighbour belongs to a
    different particle, so every 4-adjacent pair of different labels has one pixel cleared and
    no 4-connected component of the mask spans two particles.

    Args:
        labels: integer instance label image (H, W), 0 = background.

    Returns:
        uint8 mask (H, W): 255 = particle, 0 = background or separation line.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D label image, got shape {labels.shape}")
    return np.where(separated_foreground(labels), MASK_FOREGROUND, 0).astype(np.uint8)


def render_micrograph(
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    rng: np.random.Generator | int = 0,
    *,
    mean_diameter_px: float = DEFAULT_MEAN_DIAMETER_PX,
    diameter_sigma: float = DEFAULT_DIAMETER_SIGMA,
    coverage: float = DEFAULT_COVERAGE,
    data_bar_rows: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic SEM micrograph of agglomerated particles and its mask.

    Args:
        image_size: (height, width) in pixels, data bar included.
        rng: a ``numpy.random.Generator`` or an integer seed.
        mean_diameter_px: mean particle diameter (log-normal, before occlusion) in pixels.
        diameter_sigma: log-normal sigma of the particle diameters.
        coverage: target particle area fraction of the sample area (rows above the data bar).
        data_bar_rows: rows at the bottom rendered as an instrument data bar (mask 0 there).

    Returns:
        (image, mask): uint8 arrays (H, W); the mask is 255 on particles and 0 elsewhere, with
        touching particles separated by one-pixel background lines.
    """
    image, mask, _ = render_micrograph_instances(
        image_size,
        rng,
        mean_diameter_px=mean_diameter_px,
        diameter_sigma=diameter_sigma,
        coverage=coverage,
        data_bar_rows=data_bar_rows,
    )
    return image, mask


def render_micrograph_instances(
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    rng: np.random.Generator | int = 0,
    *,
    mean_diameter_px: float = DEFAULT_MEAN_DIAMETER_PX,
    diameter_sigma: float = DEFAULT_DIAMETER_SIGMA,
    coverage: float = DEFAULT_COVERAGE,
    data_bar_rows: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`render_micrograph`, and also return the instance label image.

    Each visible particle has one label (1..N, in painting order); its pixels in the mask form
    exactly one 4-connected component, so ``N`` is the number of mask components.

    Args:
        image_size: (height, width) in pixels, data bar included.
        rng: a ``numpy.random.Generator`` or an integer seed.
        mean_diameter_px: mean particle diameter (log-normal, before occlusion) in pixels.
        diameter_sigma: log-normal sigma of the particle diameters.
        coverage: target particle area fraction of the sample area (rows above the data bar).
        data_bar_rows: rows at the bottom rendered as an instrument data bar (labels 0 there).

    Returns:
        (image, mask, labels): uint8 image and mask and int32 labels, each (H, W).
    """
    height, width = _validate_image_size(image_size)
    _validate_render_arguments(mean_diameter_px, diameter_sigma, coverage)
    data_bar_rows = _validate_data_bar_rows(data_bar_rows, height)
    if isinstance(rng, np.random.Generator):
        generator = rng
    elif isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        generator = np.random.default_rng(int(rng))
    else:
        raise ValueError(f"rng must be a numpy Generator or a non-negative integer seed, got {rng!r}")

    sample_shape = (height - data_bar_rows, width)
    labels, particles = _place_particles(
        sample_shape, generator, mean_diameter_px, diameter_sigma, coverage
    )
    labels = _remove_fragments(labels)
    sample = _render_sample(labels, particles, generator)
    labels = _relabel_sequential(labels)

    image = np.empty((height, width), dtype=np.uint8)
    image[: sample_shape[0]] = sample
    labels_full = np.zeros((height, width), dtype=np.int32)
    labels_full[: sample_shape[0]] = labels
    if data_bar_rows > 0:
        image[sample_shape[0] :] = _render_data_bar((data_bar_rows, width), generator)
    return image, labels_to_mask(labels_full), labels_full


def make_synthetic_dataset(
    output_dir: str | os.PathLike,
    num_images: int = DEFAULT_NUM_IMAGES,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
    data_bar_rows: int = 0,
    pixel_size_nm: float | None = SYNTHETIC_PIXEL_SIZE_NM,
) -> list[dict[str, str]]:
    """Write a synthetic SEM dataset (images and masks as TIFF) and return its datalist.

    Layout: ``output_dir/images/synthetic_{i:03d}.tif`` and
    ``output_dir/masks/synthetic_{i:03d}_mask.tif``. Image ``i`` is drawn from a generator
    seeded with ``(seed, i)``. The parameters are recorded in ``output_dir/synthetic.json``;
    when they match and all files exist, the files are reused instead of regenerated.

    Args:
        output_dir: folder to write into (created if missing).
        num_images: number of image/mask pairs.
        image_size: (height, width) of each image in pixels.
        seed: non-negative base seed.
        data_bar_rows: rows of instrument data bar at the bottom of each image.
        pixel_size_nm: pixel size written into the TIFF resolution tags; None writes none.

    Returns:
        ``[{"image": path, "label": path}, ...]`` with absolute paths.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
    height, width = _validate_image_size(image_size)
    data_bar_rows = _validate_data_bar_rows(data_bar_rows, height)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if pixel_size_nm is not None and not (np.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise ValueError(f"pixel_size_nm must be positive or None, got {pixel_size_nm!r}")

    root = Path(output_dir).expanduser().resolve()
    image_dir = root / IMAGES_DIRNAME
    mask_dir = root / MASKS_DIRNAME
    parameters = {
        "generator_version": GENERATOR_VERSION,
        "num_images": int(num_images),
        "image_size": [height, width],
        "seed": int(seed),
        "data_bar_rows": data_bar_rows,
        "pixel_size_nm": None if pixel_size_nm is None else float(pixel_size_nm),
        "mean_diameter_px": DEFAULT_MEAN_DIAMETER_PX,
        "diameter_sigma": DEFAULT_DIAMETER_SIGMA,
        "coverage": DEFAULT_COVERAGE,
    }
    datalist = [
        {
            "image": str(image_dir / IMAGE_NAME_TEMPLATE.format(index=index)),
            "label": str(mask_dir / MASK_NAME_TEMPLATE.format(index=index)),
        }
        for index in range(num_images)
    ]
    parameters_path = root / PARAMETERS_FILENAME
    if _cache_is_valid(parameters_path, parameters, datalist):
        logger.info("Reusing %d synthetic images in %s", num_images, root)
        return datalist

    logger.info("Generating %d synthetic %dx%d images in %s", num_images, height, width, root)
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    parameters_path.unlink(missing_ok=True)  # an interrupted run must not look complete
    _remove_stale_files(image_dir, mask_dir, datalist)
    tiff_options: dict = {
        "compression": TIFF_COMPRESSION,
        "compressionargs": {"level": TIFF_COMPRESSION_LEVEL},
    }
    if pixel_size_nm is not None:
        pixels_per_cm = NM_PER_CM / float(pixel_size_nm)
        tiff_options.update(resolution=(pixels_per_cm, pixels_per_cm), resolutionunit="CENTIMETER")
    for index, item in enumerate(datalist):
        image, mask = render_micrograph(
            (height, width),
            np.random.default_rng([int(seed), index]),
            mean_diameter_px=DEFAULT_MEAN_DIAMETER_PX,
            diameter_sigma=DEFAULT_DIAMETER_SIGMA,
            coverage=DEFAULT_COVERAGE,
            data_bar_rows=data_bar_rows,
        )
        tifffile.imwrite(item["image"], image, **tiff_options)
        tifffile.imwrite(item["label"], mask, **tiff_options)
    parameters_path.write_text(json.dumps(parameters, indent=2) + "\n")
    return datalist


# ----------------------------------------------------------------------------------------------
# validation


def _validate_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(side) for side in image_size)
        valid = all(int(side) == side for side in image_size)
    except (TypeError, ValueError):
        valid = False
    if not valid or height < 1 or width < 1:
        raise ValueError(f"image_size must be two positive integers (height, width), got {image_size!r}")
    return height, width


def _validate_render_arguments(mean_diameter_px: float, diameter_sigma: float, coverage: float) -> None:
    if not (np.isfinite(mean_diameter_px) and mean_diameter_px >= MIN_DIAMETER_PX):
        raise ValueError(f"mean_diameter_px must be >= {MIN_DIAMETER_PX}, got {mean_diameter_px!r}")
    if not (np.isfinite(diameter_sigma) and diameter_sigma >= 0):
        raise ValueError(f"diameter_sigma must be >= 0, got {diameter_sigma!r}")
    if not (np.isfinite(coverage) and 0 <= coverage < 1):
        raise ValueError(f"coverage must be in [0, 1), got {coverage!r}")


def _validate_data_bar_rows(data_bar_rows: int, height: int) -> int:
    if (
        isinstance(data_bar_rows, bool)
        or not isinstance(data_bar_rows, (int, np.integer))
        or not 0 <= data_bar_rows < height
    ):
        raise ValueError(
            f"data_bar_rows must be an integer in [0, {height}) (the image height), "
            f"got {data_bar_rows!r}"
        )
    return int(data_bar_rows)


# ----------------------------------------------------------------------------------------------
# geometry


def _separated_count(labels: np.ndarray, rows: slice, cols: slice) -> int:
    """Number of mask pixels inside ``labels[rows, cols]``, looking one pixel beyond it."""
    row_stop = min(rows.stop + 1, labels.shape[0])
    col_stop = min(cols.stop + 1, labels.shape[1])
    window = separated_foreground(labels[rows.start : row_stop, cols.start : col_stop])
    return int(window[: rows.stop - rows.start, : cols.stop - cols.start].sum())


def _particle_footprint(
    diameter: float, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Draw one irregular rounded particle shape on a local grid centred on (0, 0).

    Returns:
        (inside, radial, azimuth, extent): boolean footprint (2e+1, 2e+1), the normalised
        radius (0 at the centre, 1 on the outline) and the angle of every grid point, and the
        half size e of the grid.
    """
    aspect = generator.uniform(1.0, MAX_ASPECT_RATIO)
    orientation = generator.uniform(0.0, np.pi)
    orders = np.asarray(FOURIER_ORDERS, dtype=np.float64)
    amplitudes = generator.uniform(0.0, 2.0 * FOURIER_AMPLITUDE, len(orders)) / orders
    phases = generator.uniform(0.0, 2.0 * np.pi, len(FOURIER_ORDERS))
    radius = diameter / 2.0
    semi_major = radius * np.sqrt(aspect)
    extent = int(np.ceil(semi_major * (1.0 + amplitudes.sum()))) + 1
    offsets = np.arange(-extent, extent + 1, dtype=np.float32)
    y, x = np.meshgrid(offsets, offsets, indexing="ij")
    azimuth = np.arctan2(y, x)
    # ellipse with the area of the circle of `diameter`, rotated by `orientation`
    u = x * np.cos(orientation) + y * np.sin(orientation)
    v = -x * np.sin(orientation) + y * np.cos(orientation)
    ellipse_radius = np.hypot(u / (radius * np.sqrt(aspect)), v / (radius / np.sqrt(aspect)))
    perturbation = np.ones_like(azimuth)
    for order, amplitude, phase in zip(FOURIER_ORDERS, amplitudes, phases):
        perturbation += amplitude * np.cos(order * azimuth + phase)
    radial = ellipse_radius / perturbation
    return radial <= 1.0, radial, azimuth, float(extent)


def _place_particles(
    shape: tuple[int, int],
    generator: np.random.Generator,
    mean_diameter_px: float,
    diameter_sigma: float,
    coverage: float,
) -> tuple[np.ndarray, list[dict]]:
    """Paint particles in agglomerates (painter's order) until the mask reaches ``coverage``."""
    height, width = shape
    labels = np.zeros(shape, dtype=np.int32)
    particles: list[dict] = []
    target_pixels = coverage * height * width
    if target_pixels <= 0:
        return labels, particles
    # log-normal diameters whose arithmetic mean is mean_diameter_px
    log_median = np.log(mean_diameter_px) - diameter_sigma**2 / 2.0
    expected_area = np.pi / 4.0 * mean_diameter_px**2
    budget = max(MIN_PARTICLE_BUDGET, int(MAX_PARTICLES_PER_TARGET * target_pixels / expected_area))
    margin_y, margin_x = PLACEMENT_MARGIN_FRACTION * height, PLACEMENT_MARGIN_FRACTION * width
    mask_pixels = 0
    while mask_pixels < target_pixels and len(particles) < budget:
        cluster_size = int(generator.geometric(1.0 / MEAN_CLUSTER_SIZE))
        cluster: list[tuple[float, float, float]] = []  # (centre y, centre x, radius)
        for _ in range(cluster_size):
            diameter = max(MIN_DIAMETER_PX, float(np.exp(generator.normal(log_median, diameter_sigma))))
            if cluster:
                anchor_y, anchor_x, anchor_radius = cluster[generator.integers(len(cluster))]
                angle = generator.uniform(0.0, 2.0 * np.pi)
                distance = (anchor_radius + diameter / 2.0) * generator.uniform(*CONTACT_DISTANCE_RANGE)
                centre_y = anchor_y + distance * np.sin(angle)
                centre_x = anchor_x + distance * np.cos(angle)
            else:
                centre_y = generator.uniform(-margin_y, height + margin_y)
                centre_x = generator.uniform(-margin_x, width + margin_x)
            cluster.append((centre_y, centre_x, diameter / 2.0))
            particle = _draw_appearance(generator)
            particles.append(particle)
            label = len(particles)
            inside, radial, azimuth, extent = _particle_footprint(diameter, generator)
            top, left = int(round(centre_y - extent)), int(round(centre_x - extent))
            rows = slice(max(top, 0), min(top + inside.shape[0], height))
            cols = slice(max(left, 0), min(left + inside.shape[1], width))
            if rows.start >= rows.stop or cols.start >= cols.stop:
                continue
            local = (slice(rows.start - top, rows.stop - top), slice(cols.start - left, cols.stop - left))
            count_rows = slice(max(rows.start - 1, 0), rows.stop)
            count_cols = slice(max(cols.start - 1, 0), cols.stop)
            before = _separated_count(labels, count_rows, count_cols)
            previous = labels[rows, cols].copy()
            labels[rows, cols][inside[local]] = label
            new_mask_pixels = mask_pixels + _separated_count(labels, count_rows, count_cols) - before
            if new_mask_pixels >= target_pixels:
                # the last particle: keep it only if that lands closer to the target coverage
                if new_mask_pixels - target_pixels > target_pixels - mask_pixels:
                    labels[rows, cols] = previous
                    return labels, particles
            mask_pixels = new_mask_pixels
            particle.update(rows=rows, cols=cols, radial=radial[local], azimuth=azimuth[local])
            if mask_pixels >= target_pixels or len(particles) >= budget:
                break
    return labels, particles


def _remove_fragments(labels: np.ndarray) -> np.ndarray:
    """Keep, for every label, only its largest mask component (if big enough).

    Occlusion can cut a particle into pieces, and separation lines can split a thin neck; the
    smaller pieces become background so that every label is exactly one mask component.
    """
    four_connected = ndi.generate_binary_structure(2, 1)
    labels = labels.copy()
    while True:
        foreground = separated_foreground(labels)
        components, num_components = ndi.label(foreground, structure=four_connected)
        sizes = np.bincount(components.ravel(), minlength=num_components + 1)
        owner = np.zeros(num_components + 1, dtype=labels.dtype)
        owner[components[foreground]] = labels[foreground]
        # for each label, the largest component wins (sort by size, first per owner)
        order = np.argsort(-sizes[1:], kind="stable") + 1
        _, first = np.unique(owner[order], return_index=True)
        keep = np.zeros(num_components + 1, dtype=bool)
        keep[order[first]] = True
        keep &= sizes >= MIN_VISIBLE_AREA_PX
        keep[0] = False
        kept = keep[components]
        # separation-line pixels stay with their particle when they touch its kept component
        line = (labels > 0) & ~foreground
        kept_labels = np.where(kept, labels, 0)
        attached = np.zeros_like(line)
        attached[1:, :] |= kept_labels[:-1, :] == labels[1:, :]
        attached[:-1, :] |= kept_labels[1:, :] == labels[:-1, :]
        attached[:, 1:] |= kept_labels[:, :-1] == labels[:, 1:]
        attached[:, :-1] |= kept_labels[:, 1:] == labels[:, :-1]
        new_labels = np.where(kept | (line & attached), labels, 0)
        if np.array_equal(new_labels, labels):
            return labels
        labels = new_labels


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber the labels 1..N in their original order, background staying 0."""
    values = np.unique(labels[labels > 0])
    lookup = np.zeros(int(labels.max(initial=0)) + 1, dtype=np.int32)
    lookup[values] = np.arange(1, len(values) + 1, dtype=np.int32)
    return lookup[labels]


# ----------------------------------------------------------------------------------------------
# rendering


def _draw_appearance(generator: np.random.Generator) -> dict:
    return {
        "level": generator.uniform(*PARTICLE_LEVEL_RANGE),
        "facet_angle": generator.uniform(0.0, 2.0 * np.pi),
        "facet_gradient": generator.uniform(-FACET_GRADIENT_MAX, FACET_GRADIENT_MAX),
    }


def _noise_field(
    shape: tuple[int, int], sigmas_px: tuple[float, ...], generator: np.random.Generator
) -> list[np.ndarray]:
    """Gaussian-filtered versions of one (periodic) white-noise field, each of unit std.

    Filtering happens in the Fourier domain: one inverse FFT per sigma, whatever its size.
    """
    frequency_y = np.fft.fftfreq(shape[0])[:, None]
    frequency_x = np.fft.rfftfreq(shape[1])[None, :]
    squared_frequency = (frequency_y**2 + frequency_x**2).astype(np.float32)
    spectrum_shape = squared_frequency.shape
    spectrum = generator.standard_normal(spectrum_shape, dtype=np.float32) + 1j * generator.standard_normal(
        spectrum_shape, dtype=np.float32
    )
    fields = []
    for sigma in sigmas_px:
        transfer = np.exp(-2.0 * np.pi**2 * sigma**2 * squared_frequency)
        field = np.fft.irfft2(spectrum * transfer, s=shape).astype(np.float32)
        fields.append(field / (field.std() + np.finfo(np.float32).eps))
    return fields


def _render_background(shape: tuple[int, int], generator: np.random.Generator) -> np.ndarray:
    """Dark substrate: smooth drift plus sparse curly lines (zero crossings of band-pass noise)."""
    (drift,) = _noise_field(shape, (BACKGROUND_DRIFT_SIGMA_PX,), generator)
    fine, coarse = _noise_field(shape, TEXTURE_SIGMAS_PX, generator)
    band = fine - coarse
    lines = np.exp(-((band / (TEXTURE_LINE_WIDTH * band.std() + np.finfo(np.float32).eps)) ** 2))
    (patches,) = _noise_field(shape, (TEXTURE_PATCH_SIGMA_PX,), generator)
    patches = np.clip(patches - TEXTURE_PATCH_THRESHOLD, 0.0, None)
    return BACKGROUND_LEVEL + BACKGROUND_DRIFT_AMPLITUDE * drift + TEXTURE_AMPLITUDE * lines * patches


def _render_sample(labels: np.ndarray, particles: list[dict], generator: np.random.Generator) -> np.ndarray:
    """Render the sample area: background, particle bodies, rims, blur and noise -> uint8."""
    shape = labels.shape
    intensity = _render_background(shape, generator).astype(np.float32)
    for label, particle in enumerate(particles, start=1):
        if "rows" not in particle:
            continue
        rows, cols = particle["rows"], particle["cols"]
        # only the pixels still carrying this particle's label after occlusion and clean-up
        visible = labels[rows, cols] == label
        if not visible.any():
            continue
        radial = np.clip(particle["radial"][visible], 0.0, 1.0)
        azimuth = particle["azimuth"][visible]
        facing = np.cos(azimuth - DETECTOR_ANGLE_RAD)  # +1 on the side towards the detector
        facet = particle["facet_gradient"] * radial * np.cos(azimuth - particle["facet_angle"])
        dome = DOME_SHADING * radial**2 * (facing - 1.0) / 2.0
        window = intensity[rows, cols]
        window[visible] = particle["level"] * (1.0 + facet + dome)
    # SEM edge effect: brighter within a few pixels of every particle boundary
    boundary = np.zeros(shape, dtype=bool)
    boundary[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    boundary[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    boundary[:-1, :] |= labels[:-1, :] != labels[1:, :]
    boundary[1:, :] |= labels[:-1, :] != labels[1:, :]
    foreground = labels > 0
    boundary &= foreground
    if boundary.any():
        distance = ndi.distance_transform_edt(~boundary).astype(np.float32)
        intensity += np.where(foreground, EDGE_GAIN * np.exp(-distance / EDGE_WIDTH_PX), 0.0)
    intensity = ndi.gaussian_filter(intensity, PSF_SIGMA_PX)
    counts = generator.poisson(np.clip(intensity, 0.0, None) * ELECTRONS_PER_GREY_LEVEL)
    noisy = counts.astype(np.float32) / ELECTRONS_PER_GREY_LEVEL
    noisy += READ_NOISE_STD * generator.standard_normal(shape).astype(np.float32)
    noisy = ndi.gaussian_filter1d(noisy, SCAN_BLUR_SIGMA_PX, axis=1)
    return np.clip(np.rint(noisy), 0, UINT8_MAX).astype(np.uint8)


def _render_data_bar(shape: tuple[int, int], generator: np.random.Generator) -> np.ndarray:
    """Near-black strip with bright pseudo-text and a scale bar, like a Zeiss SEM data bar."""
    rows, width = shape
    bar = DATA_BAR_LEVEL + DATA_BAR_NOISE_STD * generator.standard_normal(shape)
    glyph_rows, glyph_cols = GLYPH_SHAPE
    scale = max(1, int(round(GLYPH_HEIGHT_FRACTION * rows / glyph_rows)))
    char_height, char_advance = glyph_rows * scale, (glyph_cols + 1) * scale
    text_stop = int(TEXT_WIDTH_FRACTION * width)
    for position in TEXT_LINE_POSITIONS:
        top = int(position * rows)
        if top + char_height > rows:
            continue
        x = char_advance  # left margin of one character
        while True:
            word_length = int(generator.integers(*WORD_LENGTH_RANGE))
            if x + word_length * char_advance > text_stop:
                break
            for _ in range(word_length):
                glyph = generator.random(GLYPH_SHAPE) < GLYPH_FILL_PROBABILITY
                pixels = np.kron(glyph, np.ones((scale, scale), dtype=bool))
                bar[top : top + char_height, x : x + glyph_cols * scale][pixels] = GLYPH_LEVEL
                x += char_advance
            x += int(generator.integers(*WORD_GAP_RANGE)) * char_advance
    # scale bar: a horizontal line with end ticks, always drawn so the bar has bright pixels
    left, right = (int(fraction * width) for fraction in SCALE_BAR_X_FRACTION)
    right = max(right, left + 1)
    line_row = min(int(SCALE_BAR_Y_FRACTION * rows), rows - 1)
    bar[line_row : line_row + scale, left:right] = GLYPH_LEVEL
    tick_top, tick_bottom = max(line_row - 2 * scale, 0), min(line_row + 3 * scale, rows)
    bar[tick_top:tick_bottom, left : left + scale] = GLYPH_LEVEL
    bar[tick_top:tick_bottom, right - scale : right] = GLYPH_LEVEL
    return np.clip(np.rint(bar), 0, UINT8_MAX).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# dataset cache


def _cache_is_valid(parameters_path: Path, parameters: dict, datalist: list[dict[str, str]]) -> bool:
    if not parameters_path.is_file():
        return False
    try:
        recorded = json.loads(parameters_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if recorded != parameters:
        return False
    return all(Path(item["image"]).is_file() and Path(item["label"]).is_file() for item in datalist)


def _remove_stale_files(image_dir: Path, mask_dir: Path, datalist: list[dict[str, str]]) -> None:
    """Delete synthetic files of an earlier, larger dataset that the new one does not rewrite."""
    wanted = {Path(item["image"]).name for item in datalist} | {Path(item["label"]).name for item in datalist}
    for folder in (image_dir, mask_dir):
        for path in folder.glob("synthetic_*.tif"):
            if path.name not in wanted:
                path.unlink()
