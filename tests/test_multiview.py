"""Several views of one image by name (DINO-style: `PipelineSpec('image', decoder=...)` under several output
names): one JPEG decode per sample for all of them, each view with its own seeded windows, every view equal
to a full decode cropped and resized with INTER_AREA (OpenCV) when the shared decode is full size, and to a
decode at the rule's DCT scale when it is not (the tolerance against a full decode is stated below)."""
import cv2
import numpy as np
import pytest
import simplejpeg
import torch

from ffcv.fields import IntField, RGBImageField
from ffcv.fields.decoders import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
from ffcv.imaging import jpeg_crops, jpeg_window
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline import PipelineSpec
from ffcv.pipeline.pipeline_spec import PipelineError
from ffcv.pipeline.seeding import batch_seeds, op_key
from ffcv.reader import Reader
from ffcv.transforms import RandomHorizontalFlip, ToTensor

from conftest import photo_like
from helpers import collect, same_batches, write_and_read

SEED = 11


def write_photos(path: str, count: int, sides, write_mode: str = 'jpg', seed: int = 5) -> str:
    rng = np.random.default_rng(seed)
    samples = [(photo_like(rng, int(rng.integers(*sides)), int(rng.integers(*sides))), i) for i in range(count)]
    write_and_read(path, {'image': RGBImageField(write_mode=write_mode, jpeg_quality=90), 'label': IntField()},
                   samples)
    return path


@pytest.fixture(scope='module')
def small_jpegs(tmp_path_factory):
    """JPEGs of 50-90 px: a 40-px view of scale >= 0.4 is never twice its output, so decodes are full size."""
    return write_photos(str(tmp_path_factory.mktemp('views') / 'small.beton'), 16, (50, 90))


def dino_views(global_size=40, local_size=16, locals_=4, transforms=(), **decoder_args):
    """{name: PipelineSpec}: 2 global views (scale 0.4-1) and `locals_` local views (scale 0.05-0.4) of 'image'."""
    views = {f'global{k}': (global_size, (0.4, 1.0)) for k in range(2)}
    views.update({f'local{k}': (local_size, (0.05, 0.4)) for k in range(locals_)})
    return {name: PipelineSpec('image', decoder=RandomResizedCropRGBImageDecoder((size, size), scale=scale,
                                                                                 **decoder_args),
                               transforms=[*transforms, ToTensor()])
            for name, (size, scale) in views.items()}


def load(path, pipelines, num_workers=2, order=OrderOption.SEQUENTIAL, batch_size=8):
    """(loader, outputs): epoch 0, every output concatenated over the batches and put back in sample order."""
    loader = Loader(path, batch_size=batch_size, num_workers=num_workers, order=order, seed=SEED, drop_last=False,
                    pipelines={'image': None, 'label': None, **pipelines})
    visited = loader.next_traversal_order()
    batches = collect(loader)
    place = np.argsort(visited)
    return loader, [torch.cat([b[k] for b in batches]).numpy()[place] for k in range(len(batches[0]))]


def expected_views(path, pipelines, decode):
    """Reference: each view's windows drawn from its own seeds (seed, epoch 0, sample, op_key(name, 0)), cut
    from `decode(blob, height, width, windows)` -> (image, windows in its coordinates), resized by OpenCV."""
    reader = Reader(path)
    column = reader.metadata['f0']
    indices = np.arange(len(column))
    heights, widths = column['height'].astype(np.int64), column['width'].astype(np.int64)
    windows = {name: spec.decoder.crop_windows(heights, widths, batch_seeds(
        np.uint64(SEED), np.uint64(0), indices, np.uint64(op_key(name, 0)))) for name, spec in pipelines.items()}
    sizes = {name: tuple(spec.decoder.output_size) for name, spec in pipelines.items()}
    out = {name: [] for name in pipelines}
    for i in indices:
        blob = reader.read(int(column['data_ptr'][i]))
        image, scaled = decode(blob, int(heights[i]), int(widths[i]), [windows[n][i] for n in pipelines],
                               [sizes[n] for n in pipelines], column['mode'][i])
        for name, (top, left, h, w) in zip(pipelines, scaled):
            out[name].append(cv2.resize(image[top:top + h, left:left + w], sizes[name][::-1],
                                        interpolation=cv2.INTER_AREA))
    reader.close()
    return {name: np.stack(images) for name, images in out.items()}, windows


def full_decode(blob, height, width, windows, sizes, mode):
    """Full-size reference: simplejpeg (libjpeg-turbo, the loader's settings), or the raw pixels."""
    if mode == 1:
        return blob.reshape(height, width, 3), windows
    return simplejpeg.decode_jpeg(blob.tobytes(), colorspace='RGB', fastdct=True, fastupsample=False), windows


@pytest.mark.parametrize('write_mode', ['jpg', 'raw'])
def test_views_by_name_decode_each_image_once_and_equal_a_full_decode(tmp_path, write_mode, monkeypatch):
    path = write_photos(str(tmp_path / f'{write_mode}.beton'), 12, (50, 90), write_mode)
    decodes = []
    jpeg_window.available()  # its self-test decodes: done before counting
    for module, name in ((jpeg_crops, 'decode_jpeg'), (jpeg_window, 'decode_window'), (jpeg_crops, 'jpeg_crop')):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, **k: decodes.append(1) or _f(*a, **k))
    pipelines = dino_views()
    loader, outputs = load(path, pipelines, order=OrderOption.RANDOM)
    groups = {p.steps[0].group for p in loader.pipelines}
    assert len(groups) == 1 and None not in groups
    assert len(decodes) == (12 if write_mode == 'jpg' else 0)  # one decode per image for six views
    expected, windows = expected_views(path, pipelines, full_decode)
    for k, name in enumerate(pipelines):
        np.testing.assert_array_equal(outputs[k], expected[name], err_msg=name)
    distinct = {name: {tuple(w) for w in windows[name]} for name in pipelines}
    assert windows['global0'].tolist() != windows['global1'].tolist()  # every view draws its own windows
    assert all(len(distinct[name]) > 6 for name in pipelines)


def test_only_the_bounding_box_of_small_views_is_decoded(small_jpegs, monkeypatch):
    jpeg_window.available()
    regions = []
    original = jpeg_window.decode_window
    monkeypatch.setattr(jpeg_window, 'decode_window', lambda *a: regions.append(a[3]) or original(*a))
    pipelines = {f'local{k}': PipelineSpec('image', decoder=RandomResizedCropRGBImageDecoder(
        (12, 12), scale=(0.05, 0.2), dct_scaling=False), transforms=[ToTensor()]) for k in range(2)}
    _, outputs = load(small_jpegs, pipelines)
    expected, windows = expected_views(small_jpegs, pipelines, full_decode)
    for k, name in enumerate(pipelines):
        np.testing.assert_array_equal(outputs[k], expected[name], err_msg=name)
    if jpeg_window.available():  # else whole images are decoded (FFCV_REGION_DECODE=0 or no Pillow libjpeg)
        assert len(regions) >= 12  # of 16 images: the two windows rarely span a whole side
        first, second = windows['local0'], windows['local1']
        boxes = {(min(a[0], b[0]), min(a[1], b[1]), max(a[0] + a[2], b[0] + b[2]) - min(a[0], b[0]),
                  max(a[1] + a[3], b[1] + b[3]) - min(a[1], b[1])) for a, b in zip(first.tolist(), second.tolist())}
        assert set(regions) <= boxes


def test_views_give_the_same_batches_for_any_thread_count(small_jpegs):
    def run(num_workers):
        pipelines = dino_views(transforms=[RandomHorizontalFlip()])
        return collect(Loader(small_jpegs, batch_size=4, num_workers=num_workers, order=OrderOption.RANDOM,
                              seed=SEED, pipelines={'image': None, 'label': None, **pipelines}))
    one, two = run(1), run(2)
    assert same_batches(one, two)
    first = one[0]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[2], first[3])


def rule_scale_decode(blob, height, width, windows, sizes, mode):
    """Reference at the documented scale: the largest of the views' one-view scales, i.e. (every view's window
    at least twice its output) the smallest M/8 with every window still holding its output's pixels,
    decoded by simplejpeg; windows mapped to the decode's coordinates (top/left floored, sides rounded)."""
    needs = [(-(-oh * height // h), -(-ow * width // w)) for (_, _, h, w), (oh, ow) in zip(windows, sizes)]
    if not all(height >= 2 * nh and width >= 2 * nw for nh, nw in needs):
        return full_decode(blob, height, width, windows, sizes, mode)
    image = simplejpeg.decode_jpeg(blob.tobytes(), colorspace='RGB', fastdct=True, fastupsample=False,
                                   min_height=max(n[0] for n in needs), min_width=max(n[1] for n in needs))
    sy, sx = image.shape[0] / height, image.shape[1] / width
    scaled = [(int(t * sy), int(x * sx), max(1, min(round(h * sy), image.shape[0] - int(t * sy))),
               max(1, min(round(w * sx), image.shape[1] - int(x * sx)))) for t, x, h, w in windows]
    return image, scaled


def test_dct_scaled_shared_decode_matches_its_rule_and_stays_close_to_a_full_decode(tmp_path):
    path = write_photos(str(tmp_path / 'large.beton'), 10, (200, 260))
    pipelines = dino_views(global_size=24, local_size=12)
    _, outputs = load(path, pipelines)
    at_rule, _ = expected_views(path, pipelines, rule_scale_decode)
    full, _ = expected_views(path, pipelines, full_decode)
    for k, name in enumerate(pipelines):
        np.testing.assert_array_equal(outputs[k], at_rule[name], err_msg=name)
    _, whole_images = load(path, dino_views(global_size=24, local_size=12, window_decoding=False))
    assert all(np.array_equal(a, b) for a, b in zip(outputs, whole_images))  # the same pixels, whole decodes
    alone = [load(path, {name: spec})[1][0] for name, spec in pipelines.items()]  # each view at its own scale

    def difference(images):
        return np.concatenate([np.abs(images[k].astype(int) - full[name]).ravel() for k, name in enumerate(full)])
    diff = difference(outputs)
    # Tolerance of a DCT-scaled shared decode against full decode + INTER_AREA, on these noisy photo-like
    # images cut to 24 and 12 px: mean absolute difference < 3.5 levels, 99% of values within 12; and closer
    # to the full decode than the same views decoded one by one (each at its own, smaller or equal, scale).
    assert 0 < diff.mean() < 3.5 and np.quantile(diff, 0.99) <= 12
    assert diff.mean() < difference(alone).mean()


def test_a_view_alone_keeps_its_own_decoder_and_others_decode_separately(small_jpegs):
    class OwnDecoding(RandomResizedCropRGBImageDecoder):
        def generate_code(self):
            return super().generate_code()

    pipelines = {**dino_views(locals_=1),
                 'whole': PipelineSpec('image', decoder=CenterCropRGBImageDecoder((32, 32), 1.0),
                                       transforms=[ToTensor()]),
                 'own': PipelineSpec('image', decoder=OwnDecoding((16, 16)), transforms=[ToTensor()])}
    del pipelines['global1']
    loader, outputs = load(small_jpegs, pipelines)
    groups = {p.name: p.steps[0].group for p in loader.pipelines}
    assert groups['own'] is None and groups['global0'] is groups['local0'] is groups['whole'] is not None
    expected, _ = expected_views(small_jpegs, {k: v for k, v in pipelines.items() if k != 'own'}, full_decode)
    for k, name in enumerate(pipelines):
        if name != 'own':
            np.testing.assert_array_equal(outputs[k], expected[name], err_msg=name)
    single, _ = load(small_jpegs, {'g': PipelineSpec('image', decoder=RandomResizedCropRGBImageDecoder((16, 16)),
                                                     transforms=[ToTensor()])})
    assert single.pipelines[0].steps[0].group is None  # one view: the window-decoding path, unchanged


def test_a_view_decoder_may_also_be_the_source_of_a_branch(small_jpegs):
    pipelines = dino_views(locals_=1)
    source = pipelines['global0'].decoder
    pipelines['global0'] = PipelineSpec('image', decoder=source, transforms=[])  # the decoded batch itself
    pipelines['flipped'] = PipelineSpec(source, transforms=[RandomHorizontalFlip(flip_prob=1.0), ToTensor()])
    loader = Loader(small_jpegs, batch_size=8, order=OrderOption.RANDOM, seed=SEED,
                    pipelines={'image': None, 'label': None, **pipelines})
    assert loader.pipelines[0].steps[0].group is loader.pipelines[2].steps[0].group is not None
    for view, _, _, flipped in loader:
        np.testing.assert_array_equal(flipped.numpy(), view[:, :, ::-1])  # from the view's unflipped crops


@pytest.mark.parametrize('decoder, message', [
    (RandomResizedCropRGBImageDecoder((16, 16), scale=(0.5, 1.5)), r'scale=\(0.5, 1.5\) must satisfy 0 < min'),
    (RandomResizedCropRGBImageDecoder((16, 16), scale=(0.4, 0.1)), r'scale=\(0.4, 0.1\) must satisfy'),
    (RandomResizedCropRGBImageDecoder((16, 16), ratio=(0, 1)), r'ratio=\(0, 1\) must satisfy 0 < min'),
    (CenterCropRGBImageDecoder((16, 16), 1.25), r'ratio=1.25 must be in \(0, 1\]'),
    (RandomResizedCropRGBImageDecoder((0, 16)), r'output_size must be positive'),
])
def test_views_that_cannot_be_cut_fail_when_the_loader_is_built(small_jpegs, decoder, message):
    pipelines = {**dino_views(), 'local3': PipelineSpec('image', decoder=decoder, transforms=[ToTensor()])}
    with pytest.raises(PipelineError, match=rf"pipeline 'local3', decoder .*{message}"):
        Loader(small_jpegs, batch_size=4, pipelines={'image': None, 'label': None, **pipelines})


def test_a_corrupt_jpeg_in_a_group_names_the_sample(tmp_path):
    path = write_photos(str(tmp_path / 'bad.beton'), 6, (50, 90))
    reader = Reader(path)
    start = int(reader.alloc_table['ptr'][reader.alloc_table['sample_id'] == 4][0])
    reader.close()
    with open(path, 'r+b') as f:  # damage the entropy-coded data of sample 4's JPEG
        f.seek(start + 400)
        f.write(b'\xff\xd9' * 40)
    with pytest.raises(Exception, match='JPEG') as info:
        load(path, dino_views(), num_workers=1)
    assert 'sample 4' in ''.join(getattr(info.value, '__notes__', [])) + str(info.value)
