"""`invoke export`: the model as a library in each framework's form, checked against the framework's rules; the C API
header as C99 and C++17; the library compiled for a Cortex-M4 and two exports in one object set without a clashing
symbol; the harness built from the same library. TFLM's C++ sources are not installable here: the library compiles
against STAND-IN declarations of the TFLM API (tests/standin/tflm, named as such), and the CMake export configures
and builds against a stand-in `tflm` target made of them."""
import os
from pathlib import Path
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import assert_clean_error, run_invoke
from pipeline.firmware import projects
from pipeline.report import elf

HERE = os.path.dirname(__file__)
STANDIN_TFLM = os.path.join(HERE, "standin", "tflm")
STRICT = ["-Wall", "-Wextra", "-Werror"]


@pytest.fixture(scope="module")
def exports(esp32_build, tmp_path_factory):
    """One build folder with the digits model on esp32, nucleo-l4r5zi and nano33ble-arduino, a second model (the
    digits .tflite brought as `second.tflite`) on esp32, and their exports."""
    build_dir = tmp_path_factory.mktemp("export")
    shutil.copytree(esp32_build["build_dir"], build_dir, dirs_exist_ok=True)
    second = build_dir / "second.tflite"
    shutil.copy2(esp32_build["dir"] / "model.tflite", second)
    out = {}
    for key, args in {"esp-idf": ["--board=esp32"], "zephyr": ["--board=nucleo-l4r5zi"],
                      "arduino": ["--board=nano33ble-arduino"]}.items():
        proc = run_invoke("export", *args, f"--build-dir={build_dir}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[key] = proc
    proc = run_invoke("generate", "--board=esp32", f"--tflite={second}", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_invoke("export", "--board=esp32", "--form=cmake", "--also=second", f"--out={build_dir / 'cmake-export'}",
                      f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out["cmake"] = proc
    return {"build_dir": build_dir, "proc": out,
            "esp-idf": build_dir / "esp32" / "digits" / "export",
            "zephyr": build_dir / "nucleo-l4r5zi" / "digits" / "export",
            "arduino": build_dir / "nano33ble-arduino" / "digits" / "export",
            "cmake": build_dir / "cmake-export"}


def _no_placeholders(folder):
    for path in folder.rglob("*"):
        if path.is_file():
            assert not re.search(r"@[A-Z_]+@", path.read_text()), path


def test_esp_idf_component_follows_the_component_manager_and_cmake_rules(exports):
    export = exports["esp-idf"]
    _no_placeholders(export)
    component = export / "components" / "digits"
    manifest = yaml.safe_load((component / "idf_component.yml").read_text())
    # keys of the IDF component manager's manifest format; the TFLM component the harness already uses
    assert set(manifest) <= {"version", "description", "url", "repository", "documentation", "issues", "discussion",
                             "maintainers", "license", "tags", "targets", "dependencies", "files", "examples"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    harness = yaml.safe_load((projects.EspIdf.template / "main" / "idf_component.yml").read_text())
    assert manifest["dependencies"]["espressif/esp-tflite-micro"] == harness["dependencies"]["espressif/esp-tflite-micro"]
    assert "idf" in manifest["dependencies"]
    cmake = (component / "CMakeLists.txt").read_text()
    register = re.search(r"idf_component_register\((.*?)\)", cmake, re.S).group(1)
    sources = re.findall(r'"(src/[^"]+)"', register)
    assert sources and all((component / s).is_file() for s in sources)
    assert {os.path.basename(s) for s in sources} == {"digits.cc", "digits_arena.cc", "digits_model_data.cc",
                                                      "digits_model_settings.cc"}
    assert 'INCLUDE_DIRS "include"' in register and (component / "include" / "digits.h").is_file()
    # the example project finds the component by a path dependency, relative to its manifest
    example = export / "example"
    deps = yaml.safe_load((example / "main" / "idf_component.yml").read_text())["dependencies"]
    assert (example / "main" / deps["digits"]["path"]).resolve() == component.resolve()
    assert "digits" in (example / "main" / "CMakeLists.txt").read_text()
    assert 'CONFIG_IDF_TARGET="esp32"' in (example / "sdkconfig.defaults").read_text()
    assert "idf.py -C example" in exports["proc"]["esp-idf"].stdout


ZEPHYR_MODULE_KEYS = {"name", "build", "security", "package-managers", "blobs", "tests", "samples", "boards", "runners"}
ZEPHYR_BUILD_KEYS = {"cmake", "kconfig", "cmake-ext", "kconfig-ext", "sysbuild-cmake", "sysbuild-kconfig",
                     "sysbuild-cmake-ext", "sysbuild-kconfig-ext", "depends", "settings"}


def test_zephyr_module_follows_module_yml_schema_and_kconfig(exports):
    export = exports["zephyr"]
    _no_placeholders(export)
    module = export / "modules" / "digits"
    meta = yaml.safe_load((module / "zephyr" / "module.yml").read_text())
    # Zephyr's scripts/zephyr_module.py schema: these keys, paths relative to the module's root
    assert set(meta) <= ZEPHYR_MODULE_KEYS and set(meta["build"]) <= ZEPHYR_BUILD_KEYS
    assert re.fullmatch(r"[A-Za-z0-9_-]+", meta["name"]) and meta["name"] == "digits"
    assert (module / meta["build"]["cmake"] / "CMakeLists.txt").is_file()
    assert (module / meta["build"]["kconfig"]).is_file()
    assert meta["build"]["depends"] == ["tflite-micro"]
    kconfig = (module / "Kconfig").read_text()
    assert re.search(r"^config DIGITS\n\tbool .*\n\tdepends on TENSORFLOW_LITE_MICRO\n", kconfig, re.M)
    assert "imply TENSORFLOW_LITE_MICRO_CMSIS_NN_KERNELS" in kconfig  # the NUCLEO's kernels are CMSIS-NN
    assert re.search(r"^config DIGITS_PROFILE_MAX_OPS\n\tint ", kconfig, re.M)
    cmake = (module / "CMakeLists.txt").read_text()
    assert "if(CONFIG_DIGITS)" in cmake and "zephyr_library_named(digits)" in cmake
    for source in re.findall(r"^\s+(src/\S+?)\)?$", cmake, re.M):
        assert (module / source).is_file(), source
    assert (module / "include" / "digits.h").is_file()
    example = export / "example"
    app = (example / "CMakeLists.txt").read_text()
    extra = re.search(r"list\(APPEND ZEPHYR_EXTRA_MODULES (.*)\)", app).group(1).split()
    assert [(example / p.replace("${CMAKE_CURRENT_SOURCE_DIR}/", "")).resolve() for p in extra] == [module.resolve()]
    assert app.index("ZEPHYR_EXTRA_MODULES") < app.index("find_package(Zephyr")
    prj = (example / "prj.conf").read_text()
    assert "CONFIG_DIGITS=y" in prj and "CONFIG_TENSORFLOW_LITE_MICRO=y" in prj
    assert "CONFIG_TENSORFLOW_LITE_MICRO_CMSIS_NN_KERNELS=y" in prj


ARDUINO_CATEGORIES = {"Display", "Communication", "Signal Input/Output", "Sensors", "Device Control", "Timing",
                      "Data Storage", "Data Processing", "Other", "Uncategorized"}


def test_arduino_library_follows_the_library_specification(exports):
    export = exports["arduino"]
    _no_placeholders(export)
    lib = export / "libraries" / "digits"
    props = dict(line.split("=", 1) for line in (lib / "library.properties").read_text().splitlines() if "=" in line)
    for field in ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url",
                  "architectures"):
        assert props.get(field), field
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,62}", props["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", props["version"]) and props["category"] in ARDUINO_CATEGORIES
    assert props["architectures"] == "mbed_nano"  # the board's: arduino:mbed_nano:nano33ble
    assert props["depends"] == f"{projects.Arduino.LIBRARY} (={projects.Arduino.LIBRARY_VERSION})"
    assert props["includes"] == "digits.h" and (lib / "src" / "digits.h").is_file()
    assert not list(lib.rglob("*.cc")) and (lib / "src" / "digits.cpp").is_file()  # arduino-cli compiles .cpp
    assert f"#include <{projects.Arduino.LIBRARY_HEADER}>" in (lib / "src" / "digits.cpp").read_text()
    assert (export / "example" / "example.ino").is_file()
    assert "--library libraries/digits" in exports["proc"]["arduino"].stdout


def _cmake(*args, cwd=None):
    return subprocess.run(["cmake", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_cmake_export_configures_and_builds_against_a_standin_tflm_target(exports, tmp_path):
    export = exports["cmake"]
    _no_placeholders(export)
    # STAND-IN `tflm` target: the declarations of tests/standin/tflm, no TFLM code; the libraries compile, nothing links
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(standin_check C CXX)\n"
        "# STAND-IN for the user's TFLM target (tests/standin/tflm: declarations only)\n"
        f"add_library(tflm INTERFACE)\ntarget_include_directories(tflm INTERFACE {STANDIN_TFLM})\n"
        f"add_subdirectory({export / 'digits'} digits)\nadd_subdirectory({export / 'second'} second)\n"
        f"add_library(example_objects OBJECT {export / 'example' / 'example_models.c'} {export / 'example' / 'main.c'})\n"
        "target_link_libraries(example_objects PRIVATE digits second)\n")
    flags = " ".join(STRICT)
    proc = _cmake("-S", str(tmp_path), "-B", str(tmp_path / "b"), f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _cmake("--build", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "b" / "digits" / "libdigits.a").is_file() and (tmp_path / "b" / "second" / "libsecond.a").is_file()
    # the example as shipped: TFLM's location as cache variables (a STAND-IN tree and an empty stand-in archive)
    standin_lib = tmp_path / "libtensorflow-microlite-STANDIN.a"
    standin_lib.write_bytes(b"!<arch>\n")
    proc = _cmake("-S", str(export / "example"), "-B", str(tmp_path / "ex"), f"-DTFLM_DIR={STANDIN_TFLM}",
                  f"-DTFLM_LIBRARY={standin_lib}", "-DTFLM_BUILD_TYPE=release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _cmake("-S", str(export / "example"), "-B", str(tmp_path / "ex2"))
    assert proc.returncode != 0 and "-DTFLM_DIR=" in proc.stderr  # says which cache variable to set


def test_c_api_header_compiles_as_c99_and_cpp17(exports, tmp_path):
    include = exports["cmake"] / "digits" / "include"
    for compiler, std, lang in (("gcc", "-std=c99", "c"), ("g++", "-std=c++17", "c++")):
        proc = subprocess.run([compiler, std, "-pedantic", *STRICT, "-fsyntax-only", "-x", lang,
                               str(include / "digits.h")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def _compile_library(export, names, objects, compiler="arm-none-eabi-g++", cpu=("-mcpu=cortex-m4", "-mthumb")):
    objects.mkdir(exist_ok=True)
    for name in names:
        for source in sorted((export / name / "src").glob("*.cc")):
            proc = subprocess.run([compiler, "-std=c++17", *cpu, "-Os", *STRICT, "-fno-rtti", "-fno-exceptions",
                                   f"-I{STANDIN_TFLM}", f"-I{export / name / 'include'}", f"-I{export / name / 'src'}",
                                   "-c", str(source), "-o", str(objects / (source.name + ".o"))],
                                  capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="needs gcc-arm-none-eabi")
def test_static_arena_is_found_by_the_elf_check(exports, tmp_path):
    """`invoke build --elf=` on a firmware made from the export: the library's static arena is the `tensor_arena`
    the ELF check looks for (it was an unnamed `arena`, so the check added the arena to RAM a second time)."""
    export = exports["zephyr"] / "modules"
    _compile_library(export, ("digits",), tmp_path)
    size = int(re.search(r"#define DIGITS_ARENA_SIZE (\d+)", (export / "digits" / "include" / "digits.h").read_text())[1])
    symbols = elf.read_sections(tmp_path / "digits_arena.cc.o").symbols
    assert symbols.get(elf.ARENA_SYMBOL) == size


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="needs gcc-arm-none-eabi")
def test_two_exports_compile_for_cortex_m4_into_one_object_set_without_a_clash(exports, tmp_path):
    export = exports["cmake"]
    objects = tmp_path / "obj"
    _compile_library(export, ("digits", "second"), objects)
    for shared in ("0", "1"):  # each model in its own arena, or both in one buffer
        proc = subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-mcpu=cortex-m4", "-mthumb", *STRICT,
                               f"-DEXAMPLE_SHARED_ARENA={shared}", f"-I{export / 'digits' / 'include'}",
                               f"-I{export / 'second' / 'include'}", "-c", str(export / "example" / "example_models.c"),
                               "-o", str(objects / "example_models.o")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        undefined = subprocess.run(["arm-none-eabi-nm", "-u", str(objects / "example_models.o")], capture_output=True,
                                   text=True).stdout
        # sharing one buffer links no library's static arena (its _init is not called)
        calls_init = re.search(r"U digits_init$", undefined, re.M) is not None
        assert calls_init == (shared == "0") and ("digits_init_with_arena" in undefined) == (shared == "1")
    defined: dict[str, list[str]] = {}
    for obj in sorted(objects.glob("*.o")):
        nm = subprocess.run(["arm-none-eabi-nm", "-g", "--defined-only", str(obj)], capture_output=True, text=True)
        for line in nm.stdout.splitlines():
            kind, symbol = line.split()[-2:]
            if kind in "WVwvu":  # weak and unique symbols (template instances) are merged by the linker
                continue
            defined.setdefault(symbol, []).append(obj.name)
    clashes = {s: where for s, where in defined.items() if len(where) > 1}
    assert not clashes
    # every strong global symbol is the library's: a prefixed C function or in namespace <prefix>_model
    library_symbols = [s for s, where in defined.items() if where[0] != "example_models.o"]
    for symbol in library_symbols:
        assert re.match(r"(digits|second)_\w+$", symbol) or re.match(r"_ZN\d+(digits|second)_model", symbol), symbol
    assert "digits_run" in defined and "second_run" in defined and "digits_init" in defined


def test_harness_is_built_from_the_exported_library(exports):
    """One implementation: the ESP-IDF harness project holds the very library sources the export ships."""
    project = exports["build_dir"] / "esp32" / "digits" / "firmware" / "main"
    component = exports["esp-idf"] / "components" / "digits"
    for name in ("digits.cc", "digits_arena.cc", "digits_model_data.cc", "digits_model_settings.cc",
                 "digits_model_ops.h", "digits_model_settings.h"):
        assert (project / name).read_bytes() == (component / "src" / name).read_bytes(), name
    assert (project / "digits.h").read_bytes() == (component / "include" / "digits.h").read_bytes()
    runner = (project / "model_runner.cc").read_text()
    assert "MODEL_LIB(init_with_arena)" in runner and "MicroInterpreter" not in runner


def test_readme_and_build_switch(exports):
    readme = (exports["esp-idf"] / "README.md").read_text()
    assert "digits_init()" in readme and "path: /path/to/export/components/digits" in readme
    assert "share one buffer and run one at a time" in readme
    app = re.search(r"```c\n(.*?)```", readme, re.S).group(1)
    assert len(app.splitlines()) <= 20 and "digits_run(input" in app
    cmake_readme = (exports["cmake"] / "README.md").read_text()
    assert "`digits/`" in cmake_readme and "`second/`" in cmake_readme
    proc = run_invoke("build", "--board=esp32", "--export", f"--build-dir={exports['build_dir']}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "export (esp-idf):" in proc.stdout and (exports["esp-idf"] / "export.json").is_file()


@pytest.mark.parametrize("args, fragments", [
    (["--also=nothing-built"], ["--also=nothing-built", "holds no generated model"]),
    (["--form=zephyr"], ["--form=zephyr does not fit board esp32", "--form=cmake"]),
    (["--form=makefile"], ["--form=makefile: choose one of"]),
    (["--name=../x"], ["must be a name, not a path"]),
    (["--name=%%"], ["no letter or digit"]),
])
def test_bad_export_options_are_refused_in_one_line(exports, args, fragments):
    proc = run_invoke("export", "--board=esp32", *args, f"--build-dir={exports['build_dir']}")
    assert_clean_error(proc, *fragments)
    assert "[1/" not in proc.stdout  # refused before any stage ran


def test_export_never_replaces_a_folder_that_is_not_an_export(exports, tmp_path):
    """--out names a folder the export replaces as a whole: one holding anything else is refused, kept as it was."""
    mine = tmp_path / "my_project"
    mine.mkdir()
    (mine / "main.c").write_text("int main(void) { return 0; }\n")
    proc = run_invoke("export", "--board=esp32", f"--out={mine}", f"--build-dir={exports['build_dir']}")
    assert_clean_error(proc, str(mine), "not an earlier export", "--out")
    assert [p.name for p in mine.iterdir()] == ["main.c"] and "[1/" not in proc.stdout
    again = run_invoke("export", "--board=esp32", f"--build-dir={exports['build_dir']}")  # an earlier export: replaced
    assert again.returncode == 0, again.stderr[-2000:]


CLOCK_DRIVER = r"""
/* The test's own kernel clock for the exported Zephyr example's main.c (compiled with -Dmain=example_main): a 32-bit
 * cycle counter at 25 MHz (QEMU mps2/an386) the test sets, and example_report() timing an inference across it. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
static uint32_t counter;
uint32_t k_cycle_get_32(void) { return counter; }
uint64_t k_cyc_to_us_floor64(uint64_t cycles) { return cycles / 25u; }
void printk(const char *fmt, ...) { va_list a; va_start(a, fmt); vprintf(fmt, a); va_end(a); }
int example_report(uint32_t (*micros)(void), void (*print)(const char *line)) {
  static const uint32_t start[] = {0u, 0x7fffffffu, 0xffd00000u, 0xfffffff0u};
  char line[96];
  unsigned i;
  for (i = 0; i < sizeof start / sizeof start[0]; ++i) {
    uint32_t t0, t1;
    counter = start[i];
    t0 = micros();
    counter = start[i] + 25000000u * 2u; /* two seconds later, past the wrap from the third start on */
    t1 = micros();
    snprintf(line, sizeof line, "elapsed %lu us", (unsigned long)(uint32_t)(t1 - t0));
    print(line);
  }
  return 1;
}
int example_main(void);
int main(void) { return example_main(); }
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_zephyr_example_times_across_the_cycle_counter_wrap(exports, tmp_path):
    """The exported Zephyr example's clock (src/main.c with the harness's cycle_clock.h) on the host: an inference
    timed across the 32-bit cycle counter's wrap (every 172 s at mps2/an386's 25 MHz) takes its real 2 s, not
    a fall to 0 read as ~49 days. Zephyr's headers are STAND-INs (tests/standin/zephyr), the counter is the test's."""
    src = exports["zephyr"] / "example" / "src"
    assert (src / "cycle_clock.h").read_bytes() == (projects.Zephyr.template / "src" / "cycle_clock.h").read_bytes()
    (tmp_path / "driver.c").write_text(CLOCK_DRIVER)
    exe = tmp_path / "clock"
    for args in (["-Dmain=example_main", "-c", str(src / "main.c"), "-o", str(tmp_path / "main.o")],
                 [str(tmp_path / "main.o"), str(tmp_path / "driver.c"), "-o", str(exe)]):
        proc = subprocess.run(["gcc", "-std=c99", *STRICT, f"-I{os.path.join(HERE, 'standin', 'zephyr')}", *args],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["elapsed 2000000 us"] * 4


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="needs gcc-arm-none-eabi")
def test_arduino_example_sketch_compiles_as_the_arduino_builder_does(exports, tmp_path):
    """The exported example sketch as Arduino's builder compiles it for the Nano 33 BLE's Mbed core: the .ino as C++
    after `#include <Arduino.h>`, in the core's own C++ standard (gnu++14, its cxxflags.txt), with the library's
    sources beside it. The Arduino API (arduino::Print in scope) and the TFLM library header are STAND-INs
    (tests/standin/arduino, tests/standin/tflm). A sketch function named `Print` failed here as in the real core."""
    export = exports["arduino"]
    lib_src = export / "libraries" / "digits" / "src"
    sketch = tmp_path / "sketch"
    shutil.copytree(export / "example", sketch)
    (sketch / "example.ino.cpp").write_text("#include <Arduino.h>\n#line 1 \"example.ino\"\n"
                                            + (sketch / "example.ino").read_text())
    cpu = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16", "-Os", *STRICT]
    includes = [f"-I{os.path.join(HERE, 'standin', 'arduino')}", f"-I{STANDIN_TFLM}", f"-I{lib_src}"]
    jobs = [("arm-none-eabi-g++", "-std=gnu++14", sketch / "example.ino.cpp"),
            ("arm-none-eabi-gcc", "-std=gnu11", sketch / "example_models.c")]
    jobs += [("arm-none-eabi-g++", "-std=gnu++14", source) for source in sorted(lib_src.glob("*.cpp"))]
    for compiler, std, source in jobs:
        cxx = ["-fno-rtti", "-fno-exceptions"] if compiler.endswith("g++") else []
        proc = subprocess.run([compiler, std, *cpu, *includes, *cxx, "-c", str(source), "-o",
                               str(tmp_path / (source.name + ".o"))], capture_output=True, text=True)
        assert proc.returncode == 0, f"{source.name}: {proc.stderr[-3000:]}"


def _audio_library(tmp_path, prefix="kws"):
    """A model library rendered with the audio front end's settings (the small fc16 test model stands for a keyword
    model here: only the C compiles, nothing runs)."""
    import numpy as np

    from pipeline.firmware import codegen, library
    from pipeline.target import frontend, tflite_model

    info = tflite_model.read(Path(HERE) / "data" / "fc16_int8.tflite")
    sample = codegen.Sample(np.zeros(info.inputs[0].shape[1:], np.int8), np.zeros(info.outputs[0].shape[1:], np.int8), None)
    generated = tmp_path / "generated"
    codegen.generate(info, "kws", 4096, [f"c{i}" for i in range(int(np.prod(info.outputs[0].shape)))], sample,
                     generated, frontend=frontend.parse("stride_ms=20,mel_channels=20").as_dict())
    out = tmp_path / prefix
    return library.render(generated, prefix, out, "nucleo-l4r5zi", "cmsis_nn"), out


@pytest.mark.parametrize("compiler", ["g++", "arm-none-eabi-g++"])
def test_library_of_an_audio_model_has_the_streaming_front_end_entry(tmp_path, compiler):
    if shutil.which(compiler) is None:
        pytest.skip(f"needs {compiler}")
    files, out = _audio_library(tmp_path)
    header = (out / "kws.h").read_text()
    for line in ("#define KWS_HAS_AUDIO_FRONTEND 1", "#define KWS_AUDIO_STRIDE_SAMPLES 320u",
                 "#define KWS_AUDIO_FRAMES 49u", "#define KWS_AUDIO_CHANNELS 10u", "#define KWS_AUDIO_MEL_CHANNELS 20u",
                 "kws_status kws_audio_feed(const int16_t *samples, size_t count, int *ready);"):
        assert line in header
    assert files.settings["audio_frontend"] and files.settings["audio_stride_samples"] == 320
    # TFLM's microfrontend headers are STAND-INs here (tests/standin/microfrontend: declarations only): this proves
    # the library's front end compiles with -Werror against TFLM's API, not the features (the QEMU run does that)
    cpu = ["-mcpu=cortex-m4", "-mthumb"] if compiler.startswith("arm") else []
    proc = subprocess.run([compiler, "-std=c++17", *cpu, "-Os", *STRICT, "-fno-rtti", "-fno-exceptions",
                           f"-I{STANDIN_TFLM}", f"-I{os.path.join(HERE, 'standin', 'microfrontend')}", f"-I{out}",
                           "-c", str(out / "kws.cc"), "-o", str(tmp_path / "kws.o")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nm = subprocess.run([compiler.replace("g++", "nm") if compiler.startswith("arm") else "nm", "-g", "--defined-only",
                         str(tmp_path / "kws.o")], capture_output=True, text=True).stdout
    assert all(f"T kws_audio_{fn}" in nm for fn in ("reset", "feed", "frame", "features"))
    undefined = subprocess.run([compiler.replace("g++", "nm") if compiler.startswith("arm") else "nm", "-u",
                                str(tmp_path / "kws.o")], capture_output=True, text=True).stdout
    assert "FrontendProcessSamples" in undefined and "FrontendPopulateState" in undefined
