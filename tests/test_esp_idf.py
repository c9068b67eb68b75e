"""The rendered ESP-IDF project, checked without ESP-IDF: the partition table by ESP-IDF's rules, the sdkconfig
keys against the Kconfig facts they depend on, and the console each board file asks for."""
import pytest

from pipeline import boards
from pipeline.boards import esp_partitions
from pipeline.firmware import projects
from pipeline.errors import PipelineError

ESP_BOARDS = [b for b in boards.board_names() if boards.load_board(b).framework == "esp-idf"]

# Kconfig facts (ESP-IDF 5.1 ... 6.x, checked with esp-idf-kconfig's kconfgen on the real Kconfig files): each key
# the project sets, and what must also be set for it to be visible (a key whose condition is unmet is silently
# dropped by kconfgen, which is how a non-default baud rate used to have no effect).
KCONFIG = {
    "CONFIG_IDF_TARGET": None,
    "CONFIG_COMPILER_OPTIMIZATION_PERF": None,
    "CONFIG_ESP_TASK_WDT_EN": None,
    "CONFIG_ESP_MAIN_TASK_STACK_SIZE": None,
    "CONFIG_PARTITION_TABLE_CUSTOM": None,
    "CONFIG_PARTITION_TABLE_CUSTOM_FILENAME": "CONFIG_PARTITION_TABLE_CUSTOM",
    "CONFIG_ESP_CONSOLE_UART_CUSTOM": None,
    "CONFIG_ESP_CONSOLE_UART_CUSTOM_NUM_0": "CONFIG_ESP_CONSOLE_UART_CUSTOM",
    "CONFIG_ESP_CONSOLE_UART_BAUDRATE": "CONFIG_ESP_CONSOLE_UART_CUSTOM",
    "CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG": None,
}
FLASH_SIZES = {f"CONFIG_ESPTOOLPY_FLASHSIZE_{mb}MB" for mb in boards.ESP_FLASH_CHIP_MB}
CPU_FREQS = {"esp32": (80, 160, 240), "esp32s3": (80, 160, 240), "esp32c3": (80, 160)}  # Kconfig.cpu of each


def sdkconfig(board_name: str, tmp_path) -> dict[str, str]:
    board = boards.load_board(board_name)
    lines = projects.EspIdf.console_config(board)
    template = (projects.FIRMWARE_DIR / "esp-idf" / "sdkconfig.defaults").read_text()
    text = template.replace("@CONSOLE_CONFIG@", "\n".join(lines)).replace("@TARGET@", board.target) \
        .replace("@CLOCK_MHZ@", str(board.clock_mhz)).replace("@FLASH_CHIP_MB@", str(board.flash_chip_mb)) \
        .replace("@BOARD@", board.name)
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("name", ESP_BOARDS)
def test_sdkconfig_keys_are_known_and_visible(name, tmp_path):
    config = sdkconfig(name, tmp_path)
    board = boards.load_board(name)
    for key in config:
        assert key in KCONFIG or key in FLASH_SIZES or key.startswith("CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_"), key
        assert KCONFIG.get(key) is None or config.get(KCONFIG[key]) == "y", f"{key} needs {KCONFIG[key]}"
    assert config[f"CONFIG_ESPTOOLPY_FLASHSIZE_{board.flash_chip_mb}MB"] == "y"
    assert board.clock_mhz in CPU_FREQS[board.target]
    if board.console == "uart":
        assert config["CONFIG_ESP_CONSOLE_UART_BAUDRATE"] == str(board.serial_baud)
    else:
        assert config["CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG"] == "y" and "CONFIG_ESP_CONSOLE_UART_CUSTOM" not in config


@pytest.mark.parametrize("name", ESP_BOARDS)
def test_partition_table_follows_the_board_and_esp_idf_rules(name):
    board = boards.load_board(name)
    table = esp_partitions.layout(board)
    parsed = esp_partitions.parse_csv(esp_partitions.render_csv(table))
    assert parsed == table
    esp_partitions.check(parsed, board.flash_chip_mb * esp_partitions.MB)
    factory = [p for p in parsed if p.name == "factory"][0]
    assert factory.size == board.flash_bytes and factory.offset % 0x10000 == 0


@pytest.mark.parametrize("table, rule", [
    ([("nvs", "data", 0x9000, 0x6000), ("factory", "app", 0x18000, 0x100000)], "0x10000 boundary"),
    ([("nvs", "data", 0x9000, 0x6000), ("phy", "data", 0xE000, 0x1000)], "overlaps 'nvs'"),
    ([("nvs", "data", 0x8000, 0x6000)], "below 0x9000"),
    ([("nvs", "data", 0x9000, 0x6800)], "multiple of 0x1000"),
    ([("factory", "app", 0x10000, 0x400000)], "past the 4 MB flash chip"),
    ([("a" * 17, "data", 0x9000, 0x1000)], "1 to 16 bytes"),
    ([("nvs", "data", 0x9000, 0x1000), ("nvs", "data", 0xA000, 0x1000)], "used twice"),
])
def test_partition_rules_refuse_what_esp_idf_rejects(table, rule):
    partitions = [esp_partitions.Partition(n, t, "factory" if t == "app" else "nvs", o, s) for n, t, o, s in table]
    with pytest.raises(PipelineError, match=rule):
        esp_partitions.check(partitions, 4 * esp_partitions.MB)


def _board_text(name, **replace):
    text = (boards.BOARDS_DIR / f"{name}.toml").read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def test_app_partition_larger_than_the_chip_is_refused_before_rendering(tmp_path):
    from conftest import assert_clean_error, run_invoke

    board = tmp_path / "big.toml"
    board.write_text(_board_text("esp32", **{"flash_bytes = 3145728": "flash_bytes = 4194304"}))
    proc = run_invoke("build", f"--board={board}", f"--build-dir={tmp_path / 'b'}")
    assert_clean_error(proc, "does not fit a 4 MB flash chip", "4194304", "at most 4128768")
    assert not (tmp_path / "b").exists()  # refused before any stage ran


@pytest.mark.parametrize("replace, message", [
    ({'usb = ["10c4:ea60", "1a86:7523"]': 'usb = ["303a:1001"]'}, "serves the protocol on the UART"),
    ({'baud = 115200': 'baud = 115200\nconsole = "usb-serial-jtag"'}, "needs a chip that has one"),
    ({'baud = 115200': 'baud = 115200\nconsole = "bluetooth"'}, "must be one of uart, usb-serial-jtag"),
    ({"flash_chip_mb = 4": "flash_chip_mb = 3"}, "flash_chip_mb"),
    ({'kernels = "esp-nn"': 'kernels = "cmsis"'}, "must be one of reference, cmsis-nn, esp-nn"),
])
def test_board_file_mismatches_are_refused_naming_the_field(tmp_path, replace, message):
    path = tmp_path / "b.toml"
    path.write_text(_board_text("esp32", **replace))
    with pytest.raises(PipelineError, match=message):
        boards.load_board(str(path))


def test_usb_serial_jtag_board_renders_that_console(esp32_build, tmp_path):
    """The XIAO ESP32S3 has only the chip's USB: its project serves the protocol there and asks for that driver."""
    board = boards.load_board("xiao-esp32s3")
    projects.render(board, esp32_build["dir"] / "generated", tmp_path / "fw", 64)
    cmake = (tmp_path / "fw" / "main" / "CMakeLists.txt").read_text()
    assert "set(console_components esp_driver_usb_serial_jtag esp_driver_gpio)" in cmake  # + the timestamp pin
    assert "CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG=y" in (tmp_path / "fw" / "sdkconfig.defaults").read_text()
    assert "CONFIG_ESPTOOLPY_FLASHSIZE_8MB=y" in (tmp_path / "fw" / "sdkconfig.defaults").read_text()
    main = (tmp_path / "fw" / "main" / "main.cc").read_text()
    assert "usb_serial_jtag_driver_install" in main and "if (installed != ESP_OK)" in main
