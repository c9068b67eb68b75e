"""`invoke export`: the deployed model(s) as a library in the board's framework's own form, with a README and an
example application that runs every exported model on its built-in test sample.

  esp-idf  components/<name>/  an ESP-IDF component (idf_component.yml -> espressif/esp-tflite-micro)
  zephyr   modules/<name>/     a Zephyr module (zephyr/module.yml, CMakeLists.txt, Kconfig) on Zephyr's tflite-micro
  arduino  libraries/<name>/   an Arduino library (library.properties depends= on the sketch's TFLM library)
  other    <name>/             a CMake library (one target, TFLM's location as cache variables)

and `example/` next to them. The library sources are firmware/library/ rendered with the name as the prefix of
every symbol (pipeline/firmware/library.py), the same sources the benchmark harness is built from.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.boards import Board
from pipeline.cache import write_atomic
from pipeline.errors import PipelineError
from pipeline.firmware import library, projects

EXAMPLE_TEMPLATES = library.TEMPLATES / "example"
VERSION = "1.0.0"  # of the exported library's format; the model's identity is its hash (<name>_model_hash())


@dataclass
class ExportModel:
    name: str            # the library's name: the C prefix of its symbols
    generated_dir: Path  # the build's generated/ folder


@dataclass
class ExportResult:
    form: str               # esp-idf, zephyr, arduino or cmake
    out_dir: str
    libraries: list[str]    # one folder per model
    example_dir: str
    readme: str
    arena_bytes: dict[str, int]
    build_hint: str         # how to build the example


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


class Form:
    """One framework's library package and example application."""

    name = ""
    folder = ""         # where the libraries go inside the export
    source_ext = ".cc"
    lib_src = "src"     # where a library's sources go inside its folder
    lib_include = "include"

    def tflm_prelude(self) -> str:
        return ""

    def package(self, board: Board, lib_dir: Path, lib: library.LibraryFiles) -> None:
        raise NotImplementedError

    def example(self, board: Board, example_dir: Path, libs: list[library.LibraryFiles]) -> str:
        """Writes the example application; returns the command that builds it (from the export folder)."""
        raise NotImplementedError

    def add_to_project(self, board: Board, name: str) -> str:
        """The README's steps to use the library in one's own project (markdown)."""
        raise NotImplementedError

    def app_example(self) -> str:
        """The README's ~15-line application calling the library (markdown, with @P@ / @PU@)."""
        raise NotImplementedError

    # the example's per-model code, shared by every framework
    def example_sources(self, folder: Path, libs: list[library.LibraryFiles], c_ext: str = ".c") -> None:
        runner = (EXAMPLE_TEMPLATES / "example_model.c").read_text()
        values = {"COUNT": str(len(libs)), "SHARED_ARENA": str(max(int(lib.settings["arena_bytes"]) for lib in libs)),
                  "INCLUDES": "\n".join(f'#include "{lib.header}"' for lib in libs),
                  "RUNNERS": "\n".join(_render(runner, {"P": lib.prefix, "PU": lib.prefix.upper()}) for lib in libs),
                  "CALLS": "\n".join(f"  run_{lib.prefix}(micros, &results[{i}]);" for i, lib in enumerate(libs))}
        _write(folder / "example_models.h", _render((EXAMPLE_TEMPLATES / "example_models.h").read_text(), values))
        _write(folder / f"example_models{c_ext}", _render((EXAMPLE_TEMPLATES / "example_models.c").read_text(), values))


APP_BODY = """  static float input[@PU@_INPUT_SIZE];  /* your sensor data, as the model was trained on it */
  static float output[@PU@_OUTPUT_SIZE];
  @P@_status status = @P@_init();
  if (status != @PU@_OK) { PRINT("@P@: %s\\n", @P@_status_text(status)); return; }
  for (;;) {
    read_sensor(input, @PU@_INPUT_SIZE);
    status = @P@_run(input, @PU@_INPUT_SIZE, output, @PU@_OUTPUT_SIZE);
    if (status != @PU@_OK) { PRINT("@P@: %s\\n", @P@_status_text(status)); continue; }
    PRINT("class %s (%d/1000), arena %u bytes\\n", @P@_label(@P@_top_index()),
          (int)(output[@P@_top_index()] * 1000), (unsigned)@P@_arena_used());
    SLEEP;
  }
"""


def app_example(head: str, print_fn: str, sleep: str, tail: str = "}") -> str:
    """The README's ~15-line application: float sensor data in, the class out."""
    body = APP_BODY.replace("PRINT", print_fn).replace("SLEEP", sleep)
    return f"```c\n{head}\n{body}{tail}\n```"


class EspIdfForm(Form):
    name, folder = "esp-idf", "components"

    def app_example(self) -> str:
        return app_example('#include <stdio.h>\n#include "freertos/FreeRTOS.h"\n#include "freertos/task.h"\n'
                           '#include "@P@.h"\n\nvoid app_main(void) {', "printf", "vTaskDelay(pdMS_TO_TICKS(1000))")

    def package(self, board, lib_dir, lib):
        manifest = (projects.EspIdf.template / "main" / "idf_component.yml").read_text()
        dependencies = manifest[manifest.index("dependencies:"):]  # the TFLM component the harness uses, as is
        _write(lib_dir / "idf_component.yml",
               f'version: "{VERSION}"\ndescription: "The model {lib.settings["model_name"]} as a C library on '
               f'TensorFlow Lite Micro (generated by mcu-deploy for {board.name})"\n{dependencies}')
        sources = " ".join(f'"{self.lib_src}/{s}"' for s in lib.sources)
        _write(lib_dir / "CMakeLists.txt",
               f"# ESP-IDF component {lib.prefix} (generated by mcu-deploy): the model library; TFLM comes from the\n"
               f"# espressif/esp-tflite-micro component named in idf_component.yml.\n"
               f"idf_component_register(\n    SRCS {sources}\n    INCLUDE_DIRS \"{self.lib_include}\"\n"
               f"    PRIV_INCLUDE_DIRS \"{self.lib_src}\")\n")

    def example(self, board, example_dir, libs):
        first = libs[0].prefix
        _write(example_dir / "CMakeLists.txt",
               "# Example ESP-IDF project (generated by mcu-deploy): the exported model libraries on their test samples.\n"
               "cmake_minimum_required(VERSION 3.16)\ninclude($ENV{IDF_PATH}/tools/cmake/project.cmake)\n"
               f"project({first}_example)\n")
        deps = "".join(f"  {lib.prefix}:\n    path: ../../{self.folder}/{lib.prefix}\n" for lib in libs)
        _write(example_dir / "main" / "idf_component.yml",
               f'dependencies:\n  idf:\n    version: ">=5.1"\n{deps}')
        _write(example_dir / "main" / "CMakeLists.txt",
               "idf_component_register(\n    SRCS main.c example_models.c\n    INCLUDE_DIRS \".\"\n"
               f"    PRIV_REQUIRES esp_timer {' '.join(lib.prefix for lib in libs)})\n")
        _copy(EXAMPLE_TEMPLATES / "esp-idf" / "main" / "main.c", example_dir / "main" / "main.c")
        self.example_sources(example_dir / "main", libs)
        _write(example_dir / "sdkconfig.defaults",
               f'CONFIG_IDF_TARGET="{board.target}"\n# TFLM sets the model up on the main task\n'
               "CONFIG_ESP_MAIN_TASK_STACK_SIZE=8192\n")
        return f"idf.py -C example set-target {board.target} build flash monitor"

    def add_to_project(self, board, name):
        return (f"Copy `components/{name}/` into your project's `components/` folder, or keep it where it is and add it to "
                f"your `main/idf_component.yml`:\n\n```yaml\ndependencies:\n  {name}:\n    path: "
                f"/path/to/export/components/{name}\n```\n\n(or `set(EXTRA_COMPONENT_DIRS /path/to/export/components)` "
                f"in your top-level CMakeLists.txt). Add `{name}` to your component's `REQUIRES`/`PRIV_REQUIRES`. The "
                f"component depends on `espressif/esp-tflite-micro`, which the component manager fetches on the first "
                f"`idf.py build`.")


class ZephyrForm(Form):
    name, folder = "zephyr", "modules"

    def app_example(self) -> str:
        return app_example('#include <zephyr/kernel.h>\n#include "@P@.h"\n\nint main(void) {', "printk",
                           "k_sleep(K_SECONDS(1))")

    def package(self, board, lib_dir, lib):
        up = lib.prefix.upper()
        _write(lib_dir / "zephyr" / "module.yml",
               f"# Zephyr module {lib.prefix} (generated by mcu-deploy): the model library on Zephyr's tflite-micro "
               f"module.\nname: {lib.prefix}\nbuild:\n  cmake: .\n  kconfig: Kconfig\n  depends:\n    - tflite-micro\n")
        sources = "\n".join(f"    {self.lib_src}/{s}" for s in lib.sources)
        _write(lib_dir / "CMakeLists.txt",
               f"# The model library {lib.prefix} (generated by mcu-deploy), built when CONFIG_{up}=y.\n"
               f"if(CONFIG_{up})\n  zephyr_library_named({lib.prefix})\n  zephyr_library_sources(\n{sources})\n"
               f"  zephyr_include_directories({self.lib_include})\n"
               f"  zephyr_library_include_directories({self.lib_src})\n"
               f"  zephyr_library_compile_definitions({up}_PROFILE_MAX_OPS=${{CONFIG_{up}_PROFILE_MAX_OPS}})\n"
               + (projects.Zephyr.microfrontend().replace("target_sources(app PRIVATE", "zephyr_library_sources(")
                  .replace("target_include_directories(app PRIVATE", "zephyr_library_include_directories(")
                  if lib.settings["audio_frontend"] else "")
               + "endif()\n")
        kernels = ("\n\t  The board's kernels are CMSIS-NN: CONFIG_TENSORFLOW_LITE_MICRO_CMSIS_NN_KERNELS is "
                   "implied (the arena\n\t  size was computed for them)." if board.kernels == "cmsis-nn" else "")
        imply = "\timply TENSORFLOW_LITE_MICRO_CMSIS_NN_KERNELS\n" if board.kernels == "cmsis-nn" else ""
        _write(lib_dir / "Kconfig",
               f"# The model library {lib.prefix} (generated by mcu-deploy)\n\n"
               f"config {up}\n\tbool \"Model library {lib.prefix} ({lib.settings['model_name']}, mcu-deploy)\"\n"
               f"\tdepends on TENSORFLOW_LITE_MICRO\n{imply}\thelp\n\t  The model {lib.settings['model_name']} as a C library "
               f"({lib.prefix}.h) on Zephyr's tflite-micro module\n\t  (CONFIG_TENSORFLOW_LITE_MICRO=y, C++17)."
               f"{kernels}\n\n"
               f"config {up}_PROFILE_MAX_OPS\n\tint \"Operators timed per inference ({lib.prefix}_profile_*), 0 for none\"\n"
               f"\tdefault 0\n\tdepends on {up}\n\thelp\n\t  With a clock set by {lib.prefix}_set_profile_clock(), "
               f"every inference times up to this many\n\t  operators (12 bytes of RAM each).\n")

    def prj_conf(self, board, libs) -> str:
        kernels = projects.Zephyr.KERNELS[board.kernels]
        return ("CONFIG_CPP=y\nCONFIG_STD_CPP17=y\nCONFIG_REQUIRES_FULL_LIBC=y\nCONFIG_TENSORFLOW_LITE_MICRO=y\n"
                f"{kernels}\n" + "".join(f"CONFIG_{lib.prefix.upper()}=y\n" for lib in libs)
                + "CONFIG_MAIN_STACK_SIZE=8192\n")

    def example(self, board, example_dir, libs):
        if board.kernels not in projects.Zephyr.KERNELS:
            raise PipelineError(f"board {board.name}: Zephyr's TFLM module has no {board.kernels} kernels")
        modules = " ".join(f"${{CMAKE_CURRENT_SOURCE_DIR}}/../{self.folder}/{lib.prefix}" for lib in libs)
        _write(example_dir / "CMakeLists.txt",
               "# Example Zephyr application (generated by mcu-deploy): the exported model modules on their test samples.\n"
               "cmake_minimum_required(VERSION 3.20.0)\n"
               f"list(APPEND ZEPHYR_EXTRA_MODULES {modules})\n"
               "find_package(Zephyr REQUIRED HINTS $ENV{ZEPHYR_BASE})\n"
               f"project({libs[0].prefix}_example)\n\ntarget_sources(app PRIVATE src/main.c src/example_models.c)\n")
        _write(example_dir / "prj.conf", "# TFLM is Zephyr's optional west module tflite-micro.\n" + self.prj_conf(board, libs))
        _copy(EXAMPLE_TEMPLATES / "zephyr" / "src" / "main.c", example_dir / "src" / "main.c")
        # the harness's wrap-safe cycle clock, the same header (one implementation)
        _copy(projects.Zephyr.template / "src" / "cycle_clock.h", example_dir / "src" / "cycle_clock.h")
        self.example_sources(example_dir / "src", libs)
        return f"west build -b {board.zephyr_board} example"

    def add_to_project(self, board, name):
        return (f"Add the module to your application's CMakeLists.txt before `find_package(Zephyr)`:\n\n```cmake\n"
                f"list(APPEND ZEPHYR_EXTRA_MODULES /path/to/export/modules/{name})\n```\n\n"
                f"(or `west build -- -DZEPHYR_EXTRA_MODULES=...`) and enable it with TFLM in `prj.conf`:\n\n```\n"
                f"{self.prj_conf(board, [library.LibraryFiles(name, '', [], [], {})])}```\n\n"
                "TFLM is Zephyr's optional west module `tflite-micro` (`west config manifest.project-filter -- "
                "+tflite-micro && west update`).")


class ArduinoForm(Form):
    name, folder, source_ext, lib_include = "arduino", "libraries", ".cpp", "src"

    def app_example(self) -> str:
        body = ("#include <@P@.h>\n\nstatic float input[@PU@_INPUT_SIZE], output[@PU@_OUTPUT_SIZE];\n\n"
                "void setup() {\n  Serial.begin(115200);\n  @P@_status status = @P@_init();\n"
                "  if (status != @PU@_OK) Serial.println(@P@_status_text(status));\n}\n\nvoid loop() {\n"
                "  read_sensor(input, @PU@_INPUT_SIZE);  // your sensor data, as the model was trained on it\n"
                "  if (@P@_run(input, @PU@_INPUT_SIZE, output, @PU@_OUTPUT_SIZE) == @PU@_OK) {\n"
                "    Serial.print(\"class \");\n    Serial.print(@P@_label(@P@_top_index()));\n"
                "    Serial.print(\", arena bytes \");\n    Serial.println(@P@_arena_used());\n  }\n"
                "  delay(1000);\n}")
        return f"```cpp\n{body}\n```"

    def tflm_prelude(self) -> str:
        return projects.Arduino.tflm_prelude()

    def package(self, board, lib_dir, lib):
        architecture = board.arduino_fqbn.split(":")[1] if board.arduino_fqbn.count(":") >= 2 else "*"
        _write(lib_dir / "library.properties",
               f"name={lib.prefix}\nversion={VERSION}\nauthor=mcu-deploy\nmaintainer=mcu-deploy\n"
               f"sentence=The model {lib.settings['model_name']} as a C library on TensorFlow Lite Micro.\n"
               f"paragraph=Generated by mcu-deploy for {board.name}: {lib.prefix}_init(), {lib.prefix}_run() on "
               f"float or int8, labels, shapes, arena used. {lib.prefix}.h is C and C++.\n"
               "category=Data Processing\nurl=https://github.com/tensorflow/tflite-micro\n"
               f"architectures={architecture}\n"
               f"depends={projects.Arduino.LIBRARY} (={projects.Arduino.LIBRARY_VERSION})\n"
               f"includes={lib.header}\ndot_a_linkage=true\n")

    def example(self, board, example_dir, libs):
        _copy(EXAMPLE_TEMPLATES / "arduino" / "example.ino", example_dir / "example.ino")
        self.example_sources(example_dir, libs)
        libraries = " ".join(f"--library {self.folder}/{lib.prefix}" for lib in libs)
        return f"arduino-cli compile --fqbn {board.arduino_fqbn} {libraries} example"

    def add_to_project(self, board, name):
        return (f"Install it with `arduino-cli lib install --zip-path {name}.zip` (zip the `libraries/{name}` "
                f"folder; `arduino-cli config set library.enable_unsafe_install true` first) or copy "
                f"`libraries/{name}/` into your sketchbook's `libraries/` folder, then `#include <{name}.h>` in your "
                f"sketch. It depends on the Library Manager's {projects.Arduino.LIBRARY} "
                f"{projects.Arduino.LIBRARY_VERSION} (`arduino-cli lib install "
                f"{projects.Arduino.LIBRARY}@{projects.Arduino.LIBRARY_VERSION}`).")


class CMakeForm(Form):
    name, folder = "cmake", ""

    def app_example(self) -> str:
        return app_example('#include <stdio.h>\n#include <unistd.h>\n#include "@P@.h"\n\nint main(void) {', "printf",
                           "sleep(1)")

    def package(self, board, lib_dir, lib):
        sources = "\n".join(f"    {self.lib_src}/{s}" for s in lib.sources)
        _write(lib_dir / "CMakeLists.txt", _render((library.TEMPLATES / "cmake" / "CMakeLists.txt").read_text(),
                                                   {"P": lib.prefix, "SOURCES": sources, "BOARD": board.name,
                                                    "HAS_AUDIO": "1" if lib.settings["audio_frontend"] else "0",
                                                    "MICROFRONTEND_DIR": library.MICROFRONTEND_DIR,
                                                    "KISSFFT_DIR": library.KISSFFT_DIR,
                                                    "MICROFRONTEND_FILES": " ".join(library.MICROFRONTEND_C
                                                                                    + library.MICROFRONTEND_CC)}))

    def example(self, board, example_dir, libs):
        subdirs = "\n".join(f"add_subdirectory(../{lib.prefix} {lib.prefix})" for lib in libs)
        _write(example_dir / "CMakeLists.txt",
               "# Example host program (generated by mcu-deploy): the exported model libraries on their test samples.\n"
               f"cmake_minimum_required(VERSION 3.16)\nproject({libs[0].prefix}_example C CXX)\n\n{subdirs}\n\n"
               "add_executable(example main.c example_models.c)\n"
               f"target_link_libraries(example PRIVATE {' '.join(lib.prefix for lib in libs)})\n"
               "if(UNIX)\n  target_link_libraries(example PRIVATE m)\nendif()\n")
        _copy(EXAMPLE_TEMPLATES / "cmake" / "main.c", example_dir / "main.c")
        self.example_sources(example_dir, libs)
        return ("cmake -S example -B example/build -DTFLM_DIR=/path/to/tflite-micro "
                "-DTFLM_LIBRARY=/path/to/libtensorflow-microlite.a && cmake --build example/build && example/build/example")

    def add_to_project(self, board, name):
        return (f"```cmake\nadd_subdirectory(/path/to/export/{name} {name})\n"
                f"target_link_libraries(your_target PRIVATE {name})\n```\n\nConfigure with "
                "`-DTFLM_DIR=<your tflite-micro checkout> -DTFLM_LIBRARY=<its libtensorflow-microlite.a>` "
                "(`-DTFLM_BUILD_TYPE=release` for a `release` library), or define a `tflm` target before "
                "`add_subdirectory` (your own TFLM build), which the library then links.")


FORMS: dict[str, Form] = {f.name: f for f in (EspIdfForm(), ZephyrForm(), ArduinoForm(), CMakeForm())}


def form_for(board: Board, form: str | None = None) -> Form:
    """The board's framework's form, or `form` (cmake fits any board: bare metal, another RTOS, the host)."""
    if form is None:
        return FORMS.get(board.framework, FORMS["cmake"])
    if form not in FORMS:
        raise PipelineError(f"--form={form}: choose one of {', '.join(FORMS)}")
    if form != "cmake" and form != board.framework:
        raise PipelineError(f"--form={form} does not fit board {board.name} (framework {board.framework}): "
                            f"use --form={board.framework if board.framework in FORMS else 'cmake'} or --form=cmake")
    return FORMS[form]


def _readme(board: Board, form: Form, libs: list[library.LibraryFiles], build_hint: str) -> str:
    lib = libs[0]
    values = {"APP_EXAMPLE": form.app_example(), "P": lib.prefix, "PU": lib.prefix.upper(),
              "MODEL": str(lib.settings["model_name"]),
              "BOARD": board.name, "ARENA": str(lib.settings["arena_bytes"]),
              "INPUT_SIZE": str(lib.settings["input_size"]), "OUTPUT_SIZE": str(lib.settings["output_size"]),
              "FORM": form.name, "ADD": form.add_to_project(board, lib.prefix), "BUILD_EXAMPLE": build_hint,
              "LIBRARIES": "\n".join(
                  f"- `{form.folder + '/' if form.folder else ''}{l.prefix}/`: the model {l.settings['model_name']}, "
                  f"`{l.prefix}.h`, arena {l.settings['arena_bytes']} bytes" for l in libs)}
    return _render((library.TEMPLATES / "README.md").read_text(), values)


def check_out_dir(out_dir: Path) -> None:
    """An export replaces its folder as a whole: only a new or empty folder, or an earlier export, may be it."""
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "export.json").is_file())):
        raise PipelineError(f"{out_dir} exists and is not an earlier export (no export.json): an export replaces its "
                            "folder as a whole, so pass a new or empty folder to --out")


def export(board: Board, models: list[ExportModel], out_dir: Path, form_name: str | None = None) -> ExportResult:
    """Renders the libraries, the README and the example into a temporary folder, then swaps it in for `out_dir`
    (a failed export leaves the previous one whole)."""
    if not models:
        raise PipelineError("nothing to export")
    names = [m.name for m in models]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise PipelineError(f"two models would export as '{clash[0]}': give each its own --name")
    form = form_for(board, form_name)
    check_out_dir(out_dir)
    tmp = out_dir.with_name(f"{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        libs = []
        for model in models:
            lib_dir = tmp / form.folder / model.name if form.folder else tmp / model.name
            lib = library.render(model.generated_dir, model.name, lib_dir / form.lib_src, board.name, board.kernels,
                                 form.source_ext, form.tflm_prelude())
            if form.lib_include != form.lib_src:
                (lib_dir / form.lib_include).mkdir(parents=True, exist_ok=True)
                (lib_dir / form.lib_src / lib.header).rename(lib_dir / form.lib_include / lib.header)
            form.package(board, lib_dir, lib)
            libs.append(lib)
        build_hint = form.example(board, tmp / "example", libs)
        readme = _readme(board, form, libs, build_hint)
        _write(tmp / "README.md", readme)
        for lib in libs:
            lib_dir = tmp / form.folder / lib.prefix if form.folder else tmp / lib.prefix
            _write(lib_dir / "README.md", readme)
        leftover = [p for p in tmp.rglob("*") if p.is_file() and re.search(r"@[A-Z_]+@", p.read_text())]
        if leftover:
            raise PipelineError(f"export template left a placeholder in {leftover[0].relative_to(tmp)}")
        result = ExportResult(form.name, str(out_dir),
                              [str(out_dir / form.folder / l.prefix if form.folder else out_dir / l.prefix) for l in libs],
                              str(out_dir / "example"), str(out_dir / "README.md"),
                              {l.prefix: int(l.settings["arena_bytes"]) for l in libs}, build_hint)
        write_atomic(tmp / "export.json", json.dumps(asdict(result), indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out_dir)
    return result
