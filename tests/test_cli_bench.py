"""`ffcv bench FILE`: stages measured and named, a bottleneck named, errors in the user's terms."""
import json

import pytest

from ffcv.tools.bench import bench_file, format_report
from ffcv.tools.cli import main

FAST = ['--batches', '2', '--batch-size', '8', '--num-workers', '2']


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return (code, *capsys.readouterr())


@pytest.mark.parametrize('pipeline, decoder', [('train', 'decode + crop/resize (RandomResizedCropRGBImageDecoder)'),
                                               ('val', 'decode + crop/resize (CenterCropRGBImageDecoder)')])
def test_bench_jpeg_names_every_stage_and_the_bottleneck(fixtures_dir, capsys, pipeline, decoder):
    code, out, err = run_cli(capsys, 'bench', fixtures_dir / 'images_jpg.beton', '--pipeline', pipeline,
                             '--res', '64', *FAST)
    assert code == 0, err
    for stage in ('read (bytes touched)', 'decode (JPEG, full size)', decoder, 'ToTensor', 'ToTorchImage'):
        assert stage in out
    assert ('RandomHorizontalFlip' in out) == (pipeline == 'train')
    assert 'loader end to end:' in out
    bottleneck = next(line for line in out.splitlines() if line.startswith('bottleneck: '))
    assert "image: " in bottleneck and 'images/s' in bottleneck


def test_bench_raw_auto_picks_whole_images(fixtures_dir, capsys):
    code, out, err = run_cli(capsys, 'bench', fixtures_dir / 'cifar_like.beton', *FAST)
    assert code == 0, err
    assert 'pipeline simple' in out
    assert 'decode (raw copy)' in out and 'decode (SimpleRGBImageDecoder)' in out
    assert 'bottleneck: image: ' in out


def test_bench_json_report_is_consistent(fixtures_dir, capsys):
    code, out, _ = run_cli(capsys, 'bench', '--json', fixtures_dir / 'cifar_like.beton', *FAST)
    assert code == 0
    report = json.loads(out)
    (field,) = report['fields']
    assert field['name'] == 'image'
    stages = {stage['stage']: stage for stage in field['stages']}
    assert all(stage['images'] > 0 and stage['images_per_s'] > 0 for stage in stages.values())
    assert report['loader']['batches'] == 2 and report['loader']['images'] == 16
    in_pipeline = [f"image: {name}" for name, stage in stages.items() if stage['in_pipeline']]
    assert report['bottleneck']['stage'] in in_pipeline


def test_bench_stage_rates_follow_thread_time(fixtures_dir):
    report = bench_file(str(fixtures_dir / 'images_jpg.beton'), pipeline='val', res=32, batch_size=8,
                        num_workers=2, batches=2)
    for stage in report['fields'][0]['stages']:
        assert stage['images_per_s'] == pytest.approx(2 * 1e6 / stage['us_per_image'])
    assert 'bottleneck:' in format_report(report)


def test_bench_file_without_images_times_the_loader_only(fixtures_dir, capsys):
    code, out, _ = run_cli(capsys, 'bench', fixtures_dir / 'basic.beton', *FAST)
    assert code == 0
    assert 'loader end to end:' in out and 'samples/s' in out and 'bottleneck' not in out


def test_bench_errors_in_user_terms(fixtures_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, 'bench', fixtures_dir / 'images_jpg.beton', '--pipeline', 'simple', *FAST)
    assert code == 2 and 'SimpleRGBImageDecoder needs images of one size' in err
    code, _, err = run_cli(capsys, 'bench', tmp_path / 'missing.beton')
    assert code == 2 and 'missing.beton' in err
    code, _, err = run_cli(capsys, 'bench', fixtures_dir / 'cifar_like.beton', '--batches', '0')
    assert code == 2 and '--batches' in err


def test_bench_caps_the_batch_to_the_file(fixtures_dir, capsys):
    code, out, _ = run_cli(capsys, 'bench', '--json', fixtures_dir / 'cifar_like.beton', '--batch-size', '1000',
                           '--batches', '2', '--num-workers', '2')
    assert code == 0
    report = json.loads(out)
    assert (report['num_samples'], report['batch_size'], report['requested_batch_size']) == (64, 64, 1000)
    assert (report['loader']['batches'], report['loader']['images']) == (2, 2 * 64)
    assert all(stage['images'] == 2 * 64 for stage in report['fields'][0]['stages'])
    assert 'batch 64 (requested 1000, capped to the number of samples)' in format_report(report)
    assert 'requested' not in format_report(bench_file(str(fixtures_dir / 'cifar_like.beton'), batch_size=64,
                                                       num_workers=1, batches=1))


def test_bench_empty_file(tmp_path, capsys):
    from ffcv.fields import IntField
    from ffcv.writer import DatasetWriter
    path = tmp_path / 'empty.beton'
    DatasetWriter(str(path), {'label': IntField()}, num_workers=1).from_indexed_dataset([], progress=False)
    code, out, err = run_cli(capsys, 'bench', path)
    assert code == 2 and out == '' and f'{path} holds no samples' in err
