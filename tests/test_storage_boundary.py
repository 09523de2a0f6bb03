"""Nothing in the API reads a worker's disk (issue 20): the API, and every worker, may run on a
machine of its own, sharing only PostgreSQL, Redis and the artifact store.

The rule, checked on the source of api/ (the code only the API process runs):
1. It names no folder of a worker: not the job working folders (`work_root`, `work_dir`, mace's
   log `MACE_LOG_NAME`), not a prediction or artifact cache (`.cache.folder`, `cache_dir`), not
   a checkpoint folder.
2. Its own data folder is used only for its own files: `data_dir / "uploads"` (request spools)
   and `data_dir / "logs"`, and `data_dir.mkdir`.
3. Every file it answers with comes from artifact storage: each `FileResponse(` in api/routes
   is given `context.storage.local_path(...)`, except the dashboard's own static page.
Only core/artifacts/storage.py and core/artifacts/s3_storage.py turn a storage key into a path on
this machine.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_FILES = sorted((ROOT / "api").rglob("*.py"))
WORKER_FOLDERS = re.compile(
    r"\bwork_root\b|\bwork_dir\b|\bMACE_LOG_NAME\b|\.cache\.folder\b|\bcache_dir\b|checkpoints"
)
OWN_DATA_DIR_USE = re.compile(r'data_dir(\.mkdir\(| / "uploads"| / "logs")')
STATIC_FILE_RESPONSES = {"api/routes/dashboard.py"}


def source_lines(path: Path) -> list[tuple[str, int, str]]:
    relative = str(path.relative_to(ROOT))
    return [
        (relative, number, line)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if not line.lstrip().startswith("#")
    ]


def test_the_api_names_no_folder_of_a_worker() -> None:
    found = [
        f"{path}:{number}: {line.strip()}"
        for file in API_FILES
        for path, number, line in source_lines(file)
        if WORKER_FOLDERS.search(line)
    ]
    assert found == []


def test_the_api_uses_its_own_data_folder_only_for_its_spools_and_logs() -> None:
    found = [
        f"{path}:{number}: {line.strip()}"
        for file in API_FILES
        for path, number, line in source_lines(file)
        if "data_dir" in line and not OWN_DATA_DIR_USE.search(line)
    ]
    assert found == []


def test_every_file_the_api_sends_comes_from_artifact_storage() -> None:
    found = []
    for file in API_FILES:
        text = file.read_text(encoding="utf-8")
        relative = str(file.relative_to(ROOT))
        for match in re.finditer(r"FileResponse\(\s*([^,)]+)", text):
            if relative not in STATIC_FILE_RESPONSES and "storage.local_path(" not in match[1]:
                found.append(f"{relative}: FileResponse({match[1].strip()}")
    assert found == []


def test_only_the_storage_backends_turn_keys_into_local_paths() -> None:
    defining = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "core").rglob("*.py")
        if re.search(r"def local_path\(", path.read_text(encoding="utf-8"))
    }
    assert defining == {"core/artifacts/storage.py", "core/artifacts/s3_storage.py"}
