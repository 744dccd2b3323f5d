"""Energy meters, with a fake NVML library and a fake powercap tree."""

from __future__ import annotations

import dataclasses
import logging
import time
import types
from pathlib import Path

import pytest

from greenserv_core.energy import (
    CpuTimeEstimateMeter,
    FallbackMeter,
    NvmlCounterMeter,
    NvmlPowerMeter,
    RaplMeter,
    auto_meter,
    make_meter,
    meter_names,
)
from greenserv_core.energy import nvml as nvml_module
from greenserv_core.energy import registry as registry_module
from greenserv_core.energy.base import CounterDidNotMoveError
from greenserv_core.errors import InvalidInputError, MissingResourceError, WindowNotMeasuredError


class FakeNvml(types.SimpleNamespace):
    """Counter in mJ advancing by ``mj_per_read``; power in mW."""

    def __init__(
        self, *, counter: bool = True, mj_per_read: int = 5000, milliwatts: int = 100_000, fail_after: int | None = None
    ) -> None:
        super().__init__()
        self.counter = counter
        self.mj = 1_000_000
        self.mj_per_read = mj_per_read
        self.milliwatts = milliwatts
        self.reads = 0
        self.fail_after = fail_after

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        raise RuntimeError("no torch device here")

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.counter:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        self.mj += self.mj_per_read
        return self.mj

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return self.milliwatts


def test_counter_meter_reports_joules_and_syncs_at_both_edges() -> None:
    fake = FakeNvml(mj_per_read=2500)
    syncs = []
    meter = NvmlCounterMeter([0, 1], pynvml=fake, synchronize=lambda: syncs.append(time.perf_counter()))  # type: ignore[arg-type]
    with meter.measure() as window:
        syncs_inside = len(syncs)
    # two devices: each read advances each counter by 2.5 J
    assert window.joules == pytest.approx(2 * 2.5 * 2)
    assert window.source == "nvml-counter" and window.measured
    assert syncs_inside == 1 and len(syncs) == 2


def test_power_meter_integrates_samples() -> None:
    fake = FakeNvml(counter=False, milliwatts=200_000)
    meter = NvmlPowerMeter([0], pynvml=fake, interval_s=0.005, synchronize=lambda: None)  # type: ignore[arg-type]
    with meter.measure() as window:
        time.sleep(0.05)
    assert window.source == "nvml-power" and window.measured
    # constant 200 W over the window (its own measured duration, not a wall-clock expectation)
    assert window.joules == pytest.approx(200 * window.duration_s, rel=0.2)


def test_counter_meter_refuses_a_gpu_without_the_counter() -> None:
    with pytest.raises(MissingResourceError, match="total-energy counter"):
        NvmlCounterMeter([0], pynvml=FakeNvml(counter=False), synchronize=lambda: None)  # type: ignore[arg-type]


def test_auto_meter_prefers_counter_then_power(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml()
    monkeypatch.setattr(nvml_module, "load_pynvml", lambda: fake)
    monkeypatch.setattr(nvml_module, "cuda_synchronizer", lambda devices: lambda: None)
    assert auto_meter([0]).source == "nvml-counter"
    fake.counter = False
    assert auto_meter([0]).source == "nvml-power"


def test_auto_meter_without_any_counter_is_a_labelled_estimate(monkeypatch: pytest.MonkeyPatch, caplog) -> None:  # type: ignore[no-untyped-def]
    def no_nvml() -> None:
        raise MissingResourceError("NVML is not usable here")

    def no_rapl(cuda_devices: object) -> None:
        raise MissingResourceError("no RAPL")

    monkeypatch.setattr(nvml_module, "load_pynvml", no_nvml)
    rapl = registry_module.METERS["rapl"]
    monkeypatch.setitem(registry_module.METERS, "rapl", dataclasses.replace(rapl, build=no_rapl))
    monkeypatch.setattr(registry_module, "_announced", set())
    with caplog.at_level(logging.WARNING, logger="greenserv.energy"):
        meter = auto_meter([0])
    assert meter.source == "cpu-time-estimate"
    assert "ESTIMATED" in caplog.text
    assert auto_meter([]).source == "cpu-time-estimate"  # on the CPU, without RAPL
    with meter.measure() as window:  # type: ignore[attr-defined]
        sum(i for i in range(100_000))
    assert window.measured is False and window.source == "cpu-time-estimate"


def test_the_log_level_of_the_choice_comes_from_the_meter_not_its_name(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Named(CpuTimeEstimateMeter):
        def __init__(self, source: str, measured: bool) -> None:
            super().__init__()
            self.source, self.measured = source, measured

    monkeypatch.setattr(registry_module, "_announced", set())
    levels = {}
    for source, measured in (("estimate-free-counter", True), ("wall-plug", False)):
        monkeypatch.setitem(
            registry_module.METERS,
            "top",
            registry_module.MeterKind("top", lambda devices, s=source, m=measured: Named(s, m), 99, "any"),
        )
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="greenserv.energy"):
            assert auto_meter([]).source == source
        levels[source] = [r.levelname for r in caplog.records]
    assert levels == {"estimate-free-counter": ["INFO"], "wall-plug": ["WARNING"]}


def test_an_unmatched_nvml_handle_is_reported_once(monkeypatch: pytest.MonkeyPatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("greenserv_core.log_once._SAID", set())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake = FakeNvml()
    with caplog.at_level(logging.WARNING, logger="greenserv.energy"):
        assert nvml_module.nvml_handles(fake, [0]) == ["gpu0"]  # type: ignore[arg-type]
        assert nvml_module.nvml_handles(fake, [0]) == ["gpu0"]  # type: ignore[arg-type]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "CUDA device 0" in warnings[0] and "using NVML device 0" in warnings[0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with pytest.raises(MissingResourceError, match=r"by UUID .*CUDA_VISIBLE_DEVICES"):
        nvml_module.nvml_handles(fake, [0])  # type: ignore[arg-type]


def test_nvml_failure_mid_run_falls_back_once_and_never_raises(caplog) -> None:  # type: ignore[no-untyped-def]
    fake = FakeNvml(fail_after=3)  # construction reads once; window 1 reads twice; window 2 fails
    meter = FallbackMeter(NvmlCounterMeter([0], pynvml=fake, synchronize=lambda: None), CpuTimeEstimateMeter())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="greenserv.energy"):
        with meter.measure() as first:
            pass
        with meter.measure() as second:
            pass
        with meter.measure() as third:
            pass
    assert first.source == "nvml-counter" and first.measured
    assert second.source == "cpu-time-estimate" and not second.measured
    assert third.source == "cpu-time-estimate"
    assert caplog.text.count("failed") == 1
    assert meter.failed and "GPU_IS_LOST" in (meter.failure or "")


def test_body_errors_propagate_through_the_fallback_meter() -> None:
    meter = FallbackMeter(CpuTimeEstimateMeter(), CpuTimeEstimateMeter())
    with pytest.raises(ValueError, match="generation failed"), meter.measure():
        raise ValueError("generation failed")


def _powercap(root: Path, zones: dict[str, tuple[int, int]]) -> None:
    for name, (energy, wrap) in zones.items():
        zone = root / name
        zone.mkdir(parents=True)
        (zone / "energy_uj").write_text(str(energy))
        (zone / "max_energy_range_uj").write_text(str(wrap))


def test_rapl_sums_packages_and_handles_wraparound(tmp_path: Path) -> None:
    _powercap(
        tmp_path,
        {"intel-rapl:0": (1_000_000, 10_000_000), "intel-rapl:1": (9_500_000, 10_000_000), "intel-rapl:0:0": (5, 10)},
    )
    meter = RaplMeter(tmp_path)
    assert [z.name for z in meter.zones] == ["intel-rapl:0", "intel-rapl:1"]
    with meter.measure() as window:
        (tmp_path / "intel-rapl:0" / "energy_uj").write_text("3000000")  # +2 J
        (tmp_path / "intel-rapl:1" / "energy_uj").write_text("500000")  # wrapped: +1 J
    assert window.joules == pytest.approx(3.0)
    assert window.source == "rapl" and window.measured


def test_rapl_leaves_out_the_platform_zone_that_holds_the_packages(tmp_path: Path) -> None:
    _powercap(tmp_path, {"intel-rapl:0": (1_000_000, 10_000_000), "intel-rapl:1": (2_000_000, 10_000_000)})
    (tmp_path / "intel-rapl:0" / "name").write_text("package-0\n")
    (tmp_path / "intel-rapl:1" / "name").write_text("psys\n")
    meter = RaplMeter(tmp_path)
    assert [z.name for z in meter.zones] == ["intel-rapl:0"]
    with meter.measure() as window:
        (tmp_path / "intel-rapl:0" / "energy_uj").write_text("11000000")  # +10 J, the package
        (tmp_path / "intel-rapl:1" / "energy_uj").write_text("16000000")  # +14 J, the platform with it
    assert window.joules == pytest.approx(10.0)


def test_cpu_estimate_is_labelled_and_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENSERV_CPU_WATTS_PER_CORE", "20")
    meter = CpuTimeEstimateMeter()
    assert meter.watts_per_core == 20.0
    with meter.measure() as window:
        start = time.process_time()
        while time.process_time() - start < 0.02:
            pass
    assert window.measured is False
    assert window.joules >= 20 * 0.02 * 0.9
    with pytest.raises(InvalidInputError):
        CpuTimeEstimateMeter(watts_per_core=0)


def test_make_meter_by_name() -> None:
    assert make_meter("cpu-estimate").source == "cpu-time-estimate"
    assert meter_names() == ["auto", "nvml", "nvml-power", "rapl", "cpu-estimate"]
    with pytest.raises(InvalidInputError, match="unknown energy meter"):
        make_meter("joulemeter-9000")
    with pytest.raises(InvalidInputError, match="CUDA"):
        make_meter("nvml", [])


def test_a_cpu_meter_is_refused_for_a_model_on_cuda_as_a_gpu_meter_is_for_one_on_the_cpu() -> None:
    from greenserv_core.energy import TimedMeter, register_meter, unregister_meter

    class Package(TimedMeter):  # stands in for RAPL, whose counters this machine may not have
        source, measured = "package", True

        def _start(self) -> object:
            return None

        def _stop(self, token: object, duration_s: float) -> float:
            return 1.0

    register_meter("package", priority=-5, placement="cpu")(lambda cuda_devices: Package())
    try:
        assert make_meter("package", []).source == "package"
        with pytest.raises(InvalidInputError, match=r"'package' measures the CPU, not a model on CUDA devices \[0\]"):
            make_meter("package", [0])  # was built: the CPU's joules labelled as measured for the GPU's work
        assert make_meter("cpu-estimate", [0]).source == "cpu-time-estimate"  # a meter for any placement
    finally:
        unregister_meter("package")


def test_a_measured_meter_without_the_fallback_estimate_registered_is_used_as_it_is() -> None:
    from greenserv_core.energy import METERS, FallbackMeter, TimedMeter, make_meter, register_meter, unregister_meter
    from greenserv_core.energy.registry import FALLBACK_METER

    class Plug(TimedMeter):
        source, measured = "plug", True

        def _start(self) -> object:
            return None

        def _stop(self, token: object, duration_s: float) -> float:
            return 1.0

    register_meter("plug", priority=-5)(lambda cuda_devices: Plug())
    try:
        assert isinstance(make_meter("plug"), FallbackMeter)  # falls back to the estimate if it breaks
        kind = METERS.pop(FALLBACK_METER)
        try:
            assert isinstance(make_meter("plug"), Plug)  # no estimate left to fall back to: as it is
        finally:
            METERS[FALLBACK_METER] = kind
    finally:
        unregister_meter("plug")


def test_an_estimate_of_ones_own_that_breaks_falls_back_too() -> None:
    """An estimate meter of one's own that raised threw the model's finished answer away (only
    measured meters fell back); it now falls back to the labelled CPU-time estimate."""
    from greenserv_core.energy import FallbackMeter
    from greenserv_core.energy.registry import with_fallback

    class Guess:
        source, measured = "my-guess", False

        def measure(self) -> object:
            raise RuntimeError("the watt table is gone")

    meter = with_fallback(Guess())  # type: ignore[arg-type]
    assert isinstance(meter, FallbackMeter)
    with meter.measure() as window:
        pass
    assert window.source == "cpu-time-estimate" and not window.measured
    estimate = CpuTimeEstimateMeter()
    assert with_fallback(estimate) is estimate  # nothing else to fall back to


def test_an_estimate_goes_on_without_a_fallback_that_cannot_be_built(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.energy.registry import with_fallback

    monkeypatch.setenv("GREENSERV_CPU_WATTS_PER_CORE", "lots")  # the fallback estimate cannot be built
    estimate = CpuTimeEstimateMeter(watts_per_core=10.0)
    assert with_fallback(estimate) is estimate  # it raised, where it returned the meter as it is


def test_a_counter_that_went_back_is_no_reading() -> None:
    """A driver reload or a GPU reset restarts the counter: no measurement, never 0 J measured."""
    from greenserv_core.errors import MissingResourceError

    fake = FakeNvml(mj_per_read=2500)
    meter = NvmlCounterMeter([0], pynvml=fake, synchronize=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(MissingResourceError, match="went back"), meter.measure():
        fake.mj = 1000


def test_a_counter_that_jumped_further_than_a_gpu_can_spend_is_no_reading() -> None:
    """A garbage read (a driver bug) that jumps forward: no measurement, not 10 MJ measured."""
    from greenserv_core.errors import MissingResourceError

    fake = FakeNvml(mj_per_read=2500)
    meter = NvmlCounterMeter([0], pynvml=fake, synchronize=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(MissingResourceError, match="jumped"), meter.measure():
        fake.mj += 10_000_000_000  # 10 MJ in a moment
    with meter.measure() as window:  # 1,000 W over the 0.2 s floor is a reading
        fake.mj += 200_000
    assert window.joules == pytest.approx(202.5) and window.measured


def test_a_counter_that_went_back_costs_one_window_not_the_meter(caplog) -> None:  # type: ignore[no-untyped-def]
    """A GPU reset mid-run: that window gets the labelled estimate; the next is measured again."""
    fake = FakeNvml(mj_per_read=2500)
    meter = FallbackMeter(NvmlCounterMeter([0], pynvml=fake, synchronize=lambda: None), CpuTimeEstimateMeter())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="greenserv.energy"):
        with meter.measure() as reset:
            fake.mj = 1000
        with meter.measure() as after:
            pass
        with meter.measure() as again:
            fake.mj = 0
    assert reset.source == "cpu-time-estimate" and not reset.measured
    assert after.source == "nvml-counter" and after.measured and after.joules == pytest.approx(2.5)
    assert again.source == "cpu-time-estimate"
    assert not meter.failed and meter.missed_windows == 2 and meter.source == "nvml-counter"
    assert caplog.text.count("no reading for a window") == 1


@pytest.mark.parametrize(("setting", "named"), [("15W", "a number of watts"), ("inf", "a positive finite")])
def test_a_cpu_wattage_that_is_not_a_number_of_watts_is_named(
    setting: str, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.errors import InvalidInputError

    monkeypatch.setenv("GREENSERV_CPU_WATTS_PER_CORE", setting)
    with pytest.raises(InvalidInputError, match=f"GREENSERV_CPU_WATTS_PER_CORE must be {named}"):
        CpuTimeEstimateMeter()


def test_a_rapl_zone_without_its_range_is_no_counter(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.energy.rapl import RaplMeter
    from greenserv_core.errors import MissingResourceError

    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("100\n")
    with pytest.raises(MissingResourceError, match="no readable range"):
        RaplMeter(tmp_path)


def test_a_misspelt_meter_is_named_before_any_model_is_built() -> None:
    from greenserv_core.errors import InvalidInputError
    from greenserv_core.models.pool import build_backends

    with pytest.raises(InvalidInputError, match="unknown energy meter 'rpal'"):
        build_backends(["http://gpu-1:8000/v1#qwen"], meter="rpal")


# ---- review fixes (2026-12-05) ----------------------------------------------------------------------
def test_a_reading_that_is_not_a_number_of_joules_is_no_measurement() -> None:
    from greenserv_core.energy.base import TimedMeter
    from greenserv_core.errors import WindowNotMeasuredError

    class Reads(TimedMeter):
        source = "exporter-counter"

        def __init__(self, value: float) -> None:
            self.value = value

        def _start(self) -> object:
            return None

        def _stop(self, token: object, duration_s: float) -> float:
            return self.value

    for bad in (float("nan"), float("inf"), -5.0):  # NaN was a measured 0 J; inf raised past the fallback
        with pytest.raises(WindowNotMeasuredError, match="not a reading"), Reads(bad).measure():
            pass
        with FallbackMeter(Reads(bad), CpuTimeEstimateMeter()).measure() as window:
            pass
        assert (window.source, window.measured) == ("cpu-time-estimate", False)
    with Reads(-1e-12).measure() as window:  # a rounding error below 0 is 0
        pass
    assert window.joules == 0.0 and window.measured


def test_a_failed_synchronisation_stops_the_power_sampler() -> None:
    import threading

    def failing() -> None:
        raise RuntimeError("CUDA error: device-side assert")

    meter = NvmlPowerMeter([0], pynvml=FakeNvml(counter=False), interval_s=0.005, synchronize=failing)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="device-side"), meter.measure():
        time.sleep(0.02)
    time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == "greenserv-nvml-power"]  # was polling for good
    with pytest.raises(InvalidInputError, match="interval_s"):
        NvmlPowerMeter([0], pynvml=FakeNvml(counter=False), interval_s=0.0, synchronize=lambda: None)  # type: ignore[arg-type]


def test_a_gpu_nvml_cannot_find_by_index_leaves_a_labelled_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoSuchIndex(FakeNvml):
        def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
            raise RuntimeError("Invalid Argument")  # as NVMLError

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(nvml_module, "load_pynvml", lambda: NoSuchIndex())
    monkeypatch.setattr(nvml_module, "cuda_synchronizer", lambda devices: lambda: None)
    assert auto_meter([3]).source == "cpu-time-estimate"  # the NVML error escaped and failed every answer


def test_estimate_windows_open_at_once_split_the_processs_cpu_time() -> None:
    from greenserv_core.energy import CpuTimeEstimateMeter

    def work() -> None:
        sum(i * i for i in range(300_000))

    first, second = CpuTimeEstimateMeter(watts_per_core=1.0), CpuTimeEstimateMeter(watts_per_core=1.0)
    started = time.process_time()
    with first.measure() as one:  # two models on two devices, both estimated, answering at once
        work()
        with second.measure() as two:
            work()
            work()
        work()
    total = time.process_time() - started
    assert one.joules + two.joules == pytest.approx(total, rel=0.05)  # was total plus the overlap: 1.5×
    assert one.joules > two.joules > 0


def test_a_fallback_kept_beside_a_working_meter_takes_no_share_of_the_estimates() -> None:
    from greenserv_core.energy import CpuTimeEstimateMeter
    from greenserv_core.energy.base import TimedMeter
    from greenserv_core.energy.fallback import FallbackMeter

    class Counter(TimedMeter):  # a GPU's counter, say
        source, measured = "counter", True

        def _start(self) -> object:
            return 0.0

        def _stop(self, token: object, duration_s: float) -> float:
            return 5.0

    watched, estimate = FallbackMeter(Counter(), CpuTimeEstimateMeter()), CpuTimeEstimateMeter(watts_per_core=1.0)
    started = time.process_time()
    with watched.measure(), estimate.measure() as alone:  # a GPU model answering beside a CPU one
        sum(i * i for i in range(300_000))
    assert alone.joules == pytest.approx(time.process_time() - started, rel=0.1)  # was half: the standby took a share


def test_a_named_meter_that_cannot_measure_here_is_refused_when_the_pool_is_built(tmp_path: Path) -> None:
    from greenserv_core.backends import GenerationSettings
    from greenserv_core.backends.transformers import TransformersBackend
    from greenserv_core.energy import register_meter, unregister_meter
    from greenserv_core.models import ModelSpec
    from greenserv_core.models.pool import build_backends

    def absent(cuda_devices: object) -> CpuTimeEstimateMeter:
        raise MissingResourceError("no such counter on this machine")

    register_meter("absent", priority=-9)(absent)
    try:
        models = [ModelSpec("tiny", path=str(tmp_path / "no-weights-needed")), "http://gpu-1:8000/v1#qwen"]
        with pytest.raises(InvalidInputError, match=r"the absent meter cannot measure tiny here \(no such counter"):
            build_backends(models, meter="absent")  # was accepted: the first answer failed, after loading weights
        pool = build_backends(models[1:], meter="absent")  # a remote model's server reports or estimates its joules
        assert [b.info.name for b in pool] == ["qwen"]
        local = TransformersBackend(models[0], device="cpu", meter="absent")  # type: ignore[arg-type]
        local._fitting_prompt = lambda messages, settings: "Hi"  # type: ignore[method-assign]
        with pytest.raises(MissingResourceError, match="no such counter"):  # was: cannot load model 'tiny'
            local.generate_batch([[{"role": "user", "content": "Hi"}]], GenerationSettings())
        assert not local.is_loaded  # built directly, its meter fails at the query, before the weights load
    finally:
        unregister_meter("absent")


# ---- review fixes (2026-12-06) ----------------------------------------------------------------------
class _FrozenNvml(FakeNvml):
    """One counter per GPU, moved only by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.counters = {"gpu0": 1_000_000, "gpu1": 5_000_000}

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        return self.counters[handle]


def test_a_gpu_counter_that_stood_still_through_a_window_is_no_reading() -> None:
    from greenserv_core.energy.base import CounterDidNotMoveError

    fake = _FrozenNvml()
    counter = NvmlCounterMeter([0, 1], pynvml=fake, synchronize=lambda: None)  # type: ignore[arg-type]
    with counter.measure() as partial:
        time.sleep(0.06)
        fake.counters["gpu1"] += 180_000  # GPU 1 spent 180 J; GPU 0's counter stopped: was 180 J measured
    assert (partial.joules, partial.source, partial.measured) == (180.0, "nvml-counter-partial", False)
    with pytest.raises(CounterDidNotMoveError, match="GPU 0, 1 did not move"), counter.measure():
        time.sleep(0.06)
    meter = FallbackMeter(counter, CpuTimeEstimateMeter())
    with meter.measure() as stalled:
        time.sleep(0.06)  # neither moved: was 0 J measured
    with meter.measure() as short:
        pass  # a short window between two refreshes: no reading either (it was 0 J, measured)
    with meter.measure() as moved:
        time.sleep(0.06)
        fake.counters["gpu0"] += 2000
        fake.counters["gpu1"] += 3000
    assert (stalled.source, stalled.measured) == ("cpu-time-estimate", False) and meter.missed_windows == 2
    assert (short.source, short.measured) == ("cpu-time-estimate", False)
    assert moved.joules == pytest.approx(5.0) and moved.measured and not meter.failed


def test_a_gpu_counter_that_stood_still_keeps_the_joules_of_the_gpus_that_moved(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One of two GPUs stalled: the other's joules are kept, labelled not measured, not replaced by the estimate."""
    monkeypatch.setattr("greenserv_core.log_once._SAID", set())
    fake = _FrozenNvml()
    meter = FallbackMeter(NvmlCounterMeter([0, 1], pynvml=fake, synchronize=lambda: None), CpuTimeEstimateMeter())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="greenserv.energy"):
        for _ in range(2):
            with meter.measure() as partial:
                time.sleep(0.06)
                fake.counters["gpu1"] += 180_000  # was the CPU-time estimate: GPU 1's 180 J discarded
            assert (partial.joules, partial.source, partial.measured) == (180.0, "nvml-counter-partial", False)
    assert meter.missed_windows == 0 and not meter.failed
    assert caplog.text.count("GPU 0 did not move") == 1 and "nvml-counter-partial" in caplog.text


def test_an_nvml_meter_measures_a_gpu_listed_twice_once_and_needs_one(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FrozenNvml()
    monkeypatch.setattr(nvml_module, "load_pynvml", lambda: fake)
    monkeypatch.setattr(nvml_module, "cuda_synchronizer", lambda devices: lambda: None)
    with make_meter("nvml", [0, 0, 1, 0]).measure() as window:
        fake.counters["gpu0"] += 50_000
    assert window.joules == pytest.approx(50.0)  # was 150 J: GPU 0 counted once per mention
    for meter in (NvmlCounterMeter, NvmlPowerMeter):
        assert meter([1, 0, 1], pynvml=fake, synchronize=lambda: None).cuda_devices == (1, 0)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="at least one CUDA device"):  # was 0 J measured, of no GPU
            meter([], pynvml=fake, synchronize=lambda: None)  # type: ignore[arg-type]


def test_a_window_the_primary_missed_is_charged_its_share_of_the_cpu_time() -> None:
    from greenserv_core.energy.base import TimedMeter
    from greenserv_core.errors import WindowNotMeasuredError

    class Reset(TimedMeter):  # a GPU counter that went back during every window
        source, measured = "nvml-counter", True

        def _start(self) -> object:
            return None

        def _stop(self, token: object, duration_s: float) -> float:
            raise WindowNotMeasuredError("the GPU energy counter went back")

    def work() -> None:
        sum(i * i for i in range(300_000))

    gpu, other_gpu = (FallbackMeter(Reset(), CpuTimeEstimateMeter(watts_per_core=1.0)) for _ in range(2))
    cpu = CpuTimeEstimateMeter(watts_per_core=1.0)
    started = time.process_time()
    with gpu.measure() as missed:  # a GPU model whose window gets the estimate, beside a CPU model
        work()
        with cpu.measure() as estimated:
            work()
        with other_gpu.measure() as also_missed:  # another GPU model whose window gets the estimate too
            work()
    total = time.process_time() - started
    assert missed.source == also_missed.source == "cpu-time-estimate" and not missed.measured
    charged = missed.joules + estimated.joules + also_missed.joules
    # missed: all of the first third, half of the others (7/6 of the total in all); it was the whole
    # process's CPU time (5/3 of the total: the CPU model's seconds counted twice)
    assert total < charged < 1.3 * total
    assert missed.joules > estimated.joules > also_missed.joules > 0
    with gpu.measure() as beside, cpu.measure() as alongside:  # only ever beside an estimate: read 0 J for a while
        work()
    assert beside.joules == pytest.approx(alongside.joules / 2, rel=0.3)


def test_a_rapl_counter_that_was_reset_is_no_reading(tmp_path: Path) -> None:
    from greenserv_core.errors import WindowNotMeasuredError

    _powercap(tmp_path, {"intel-rapl:0": (500_000_000, 1_000_000_000)})
    meter = RaplMeter(tmp_path)
    counter = tmp_path / "intel-rapl:0" / "energy_uj"
    with pytest.raises(WindowNotMeasuredError, match="went back"), meter.measure():
        counter.write_text("1000")  # reset (a module reload), then 1 mJ: was read as a wrap, 500 J measured
    with FallbackMeter(meter, CpuTimeEstimateMeter()).measure() as window:
        counter.write_text("500")
    assert (window.source, window.measured) == ("cpu-time-estimate", False)
    counter.write_text("999000000")
    with meter.measure() as wrapped:
        counter.write_text("1000000")  # a real wrap in a short window: 2 J
    assert wrapped.joules == pytest.approx(2.0) and wrapped.measured


def test_a_rapl_window_longer_than_one_wrap_is_summed_from_the_reads_while_it_is_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from greenserv_core.energy import rapl

    monkeypatch.setattr(rapl, "POLL_S", 0.02)
    _powercap(tmp_path, {"intel-rapl:0": (1_000_000, 10_000_000)})  # a 10 J range
    counter = tmp_path / "intel-rapl:0" / "energy_uj"
    meter, value = RaplMeter(tmp_path), 1_000_000
    with meter.measure() as window:
        for _ in range(20):  # 2 J at a time: 40 J, four wraps
            value = (value + 2_000_000) % 10_000_000
            counter.write_text(str(value))
            time.sleep(0.1)  # several reads of the poller
    assert window.joules == pytest.approx(40.0)  # was 0.0: two reads tell one wrap at most
    assert window.source == "rapl" and window.measured


def test_the_closing_synchronisation_is_inside_the_window_and_its_duration() -> None:
    """GPU work the block queued and did not wait for (asynchronous CUDA) is counted over the
    seconds it took: was read as a counter that jumped by more than 5 kW in 0 s, and so the
    window had no reading."""
    started = time.perf_counter()

    class Gpu(FakeNvml):
        def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:  # 4 kW of real time
            return 10**9 + int((time.perf_counter() - started) * 4_000_000)

    queued: list[float] = []

    def synchronize() -> None:  # waits for the queued kernels, as torch.cuda.synchronize does
        while queued:
            time.sleep(queued.pop())

    meter = NvmlCounterMeter([0], pynvml=Gpu(), synchronize=synchronize)  # type: ignore[arg-type]
    with meter.measure() as window:
        queued.append(0.3)  # returns before the GPU is done
    assert window.duration_s >= 0.3
    assert window.joules == pytest.approx(4000 * window.duration_s, rel=0.1)
    assert (window.source, window.measured) == ("nvml-counter", True)


def test_a_window_whose_block_raised_raises_the_blocks_error_not_the_meters() -> None:
    fake = FakeNvml(mj_per_read=-5)  # the counter goes back: no reading of this window

    class OutOfMemory(RuntimeError):
        pass

    meter = NvmlCounterMeter([0], pynvml=fake, synchronize=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(OutOfMemory), meter.measure() as window:  # was the meter's WindowNotMeasuredError
        raise OutOfMemory("CUDA out of memory")
    assert not window.measured
    with pytest.raises(WindowNotMeasuredError, match="went back"), meter.measure():
        pass  # (a block that did not raise sees the meter's error)


def test_a_rapl_counter_that_never_moves_is_no_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.energy import rapl

    monkeypatch.setattr(rapl, "STALLED_AFTER_S", 0.05)
    _powercap(tmp_path, {"intel-rapl:0": (1_000_000, 10_000_000), "intel-rapl:1": (2_000_000, 10_000_000)})
    meter = RaplMeter(tmp_path)
    with pytest.raises(CounterDidNotMoveError), meter.measure():  # was 0 J, measured
        time.sleep(0.06)
    with FallbackMeter(meter, CpuTimeEstimateMeter()).measure() as window:
        time.sleep(0.06)
    assert (window.source, window.measured) == ("cpu-time-estimate", False)
    with meter.measure() as short:  # shorter than a refresh can be trusted to show: 0 J
        pass
    assert short.joules == 0.0 and short.measured
    with meter.measure() as moving:
        time.sleep(0.06)
        (tmp_path / "intel-rapl:1" / "energy_uj").write_text("2500000")
    assert moving.joules == pytest.approx(0.5) and moving.measured
