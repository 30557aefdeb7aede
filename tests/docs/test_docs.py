"""The docs cannot rot: every fenced block of commands is either run here (on small settings)
or marked with the reason it is not; every relative link and anchor resolves; every option a
doc gives a logattn command exists in that command's --help; no file refers to anything
outside the repository.

A block's marker is an HTML comment on the line before its fence:

    <!-- docs-test: run -->                              run as written
    <!-- docs-test: run; train: --steps 3 --batch 2 -->  with these options set on every
                                                         `logattn train` of the block
    <!-- docs-test: skip (needs 16 machines) -->         not run, and why

Blocks run with bash, in order (README.md, then docs/ in PAGES' order), in one scratch
folder holding links to the repository's build/ and data/, with `logattn` on PATH: a block
may use what an earlier one made (runs/shakespeare). Blocks whose language is text, c++,
python, json or pycon are examples of output or code, not commands, and need no marker.
"""
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOGATTN = os.path.abspath(os.environ.get("LOGATTN_BIN", os.path.join(ROOT, "build", "logattn")))
PAGES = ["README.md", "docs/library.md", "docs/python.md", "docs/training.md",
         "docs/tokenizer.md", "docs/generation.md", "docs/quantization.md", "docs/serving.md",
         "docs/benchmarks.md", "docs/reliability.md", "docs/dependencies.md", "docs/design.md",
         "DEVELOPERS.md", "CHANGELOG.md", "data/README.md"]
NOT_COMMANDS = {"text", "c++", "cpp", "python", "json", "pycon", "console-output"}
MARKER = re.compile(r"<!-- docs-test: (run|skip)(.*?) -->")


def read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def blocks(text):
    """(language, marker match or None, body, line number) of every fenced block."""
    out = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*```(\S*)", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        indent = len(lines[i]) - len(lines[i].lstrip())
        body = "\n".join(line[indent:] for line in lines[i + 1:j])
        marker = MARKER.search(lines[start - 1]) if start > 0 else None
        out.append((lang, marker, body, start + 1))
        i = j + 1
    return out


def slug(heading):
    """GitHub's anchor of a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(text):
    found = set()
    in_fence = False
    for line in text.split("\n"):
        if re.match(r"^\s*```", line):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def commands(text):
    """Each `logattn ...` invocation in text (shell lines, backslashes joined), as a token
    list from the command name on, brackets of optional arguments dropped."""
    text = text.replace("\\\n", " ")
    out = []
    for line in text.split("\n"):
        line = line.replace("[", " ").replace("]", " ").replace("|", " ")
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        for k, t in enumerate(tokens):
            if os.path.basename(t) == "logattn" and "/" not in t.replace("./build/", ""):
                out.append(tokens[k + 1:])
    return out


class Docs(unittest.TestCase):
    def test_every_block_of_commands_is_marked(self):
        for page in PAGES:
            for lang, marker, body, line in blocks(read(page)):
                if lang in NOT_COMMANDS:
                    continue
                self.assertIsNotNone(marker, f"{page}:{line}: a block without a docs-test marker")
                if marker.group(1) == "skip":
                    self.assertRegex(marker.group(2), r"\(.+\)",
                                     f"{page}:{line}: a skipped block says why")

    def test_every_benchmark_table_says_where_it_comes_from(self):
        # A block between bench-table markers is one of bench/tables.py's tables, headed by
        # the CPU, the date, the commit and the commands that made it.
        spec = importlib.util.spec_from_file_location("tables", os.path.join(ROOT, "bench",
                                                                           "tables.py"))
        tables = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tables)
        seen = set()
        for page in PAGES:
            text = read(page)
            for m in re.finditer(r"<!-- bench-table: (\S+) -->\n(.*?)<!-- /bench-table -->",
                                 text, re.S):
                name, body = m.group(1), m.group(2)
                self.assertIn(name, tables.TABLES, f"{page}: unknown table {name}")
                self.assertEqual(tables.TABLES[name]["page"], page, name)
                heading = body.split("\n", 1)[0]
                self.assertRegex(heading, tables.HEADING, f"{page}: table {name}")
                for cmd in tables.TABLES[name]["cmds"]:
                    self.assertIn(f"`{tables.shown(cmd)}`", heading, name)
                self.assertIn("|---", body, f"{page}: table {name} has no rows")
                seen.add(name)
            self.assertEqual(text.count("<!-- bench-table:"), text.count("<!-- /bench-table -->"),
                             page)
        self.assertEqual(seen, set(tables.TABLES), "every table is in its page")

    def test_relative_links_and_anchors_resolve(self):
        for page in PAGES:
            text = read(page)
            # Links outside code: [text](target), ![alt](target).
            prose = re.sub(r"```.*?```", "", text, flags=re.S)
            prose = re.sub(r"`[^`\n]*`", "", prose)
            for target in re.findall(r"\]\(([^)\s]+)\)", prose):
                if re.match(r"^[a-z]+:", target):
                    continue  # https:, mailto:
                path, _, anchor = target.partition("#")
                full = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) \
                    if path else os.path.join(ROOT, page)
                self.assertTrue(os.path.exists(full), f"{page}: link to {target}: no such file")
                self.assertTrue(full.startswith(ROOT + os.sep) or full == ROOT,
                                f"{page}: link to {target} leaves the repository")
                if anchor:
                    self.assertIn(anchor, anchors(read(os.path.relpath(full, ROOT))),
                                  f"{page}: link to {target}: no such heading")

    def test_no_file_refers_to_anything_outside_the_repository(self):
        tracked = subprocess.run(["git", "-C", ROOT, "ls-files"], capture_output=True,
                                 text=True).stdout.split()
        if not tracked:
            self.skipTest("not a git checkout")
        for path in tracked:
            if not re.search(r"\.(md|cc|h|py|sh|txt|toml|cmake|cjs)$|CMakeLists", path):
                continue
            if path.startswith("tests/docs/"):
                continue
            with open(os.path.join(ROOT, path), encoding="utf-8", errors="replace") as f:
                text = f.read()
            for bad in ("../shared", "DESIGN.md"):
                self.assertNotIn(bad, text, f"{path} refers to {bad}, outside the repository")

    def test_every_option_named_exists_in_its_commands_help(self):
        helps = {}

        def options_of(cmd):
            if cmd not in helps:
                r = subprocess.run([LOGATTN, *cmd, "--help"], capture_output=True, text=True)
                helps[cmd] = set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*|-[a-zA-Z])\b",
                                            r.stdout)) if r.returncode == 0 else None
            return helps[cmd]

        checked = 0
        for page in PAGES:
            text = read(page)
            spans = [b for _, _, b, _ in blocks(text)] + re.findall(r"`([^`\n]+)`", text)
            for span in spans:
                for tokens in commands(span):
                    if not tokens or tokens[0].startswith("-"):
                        continue  # `logattn --version`, `logattn` alone
                    cmd = tuple(tokens[:2]) if tokens[0] == "bench" and len(tokens) > 1 \
                        else tuple(tokens[:1])
                    known = options_of(cmd)
                    self.assertIsNotNone(known, f"{page}: `logattn {' '.join(cmd)}` is no command")
                    for t in tokens[len(cmd):]:
                        option = t.split("=")[0]
                        if re.match(r"^--?[a-zA-Z]", option):
                            self.assertIn(option, known,
                                          f"{page}: logattn {' '.join(cmd)} has no {option}")
                            checked += 1
        self.assertGreater(checked, 50)

    def test_runnable_blocks_run(self):
        work = tempfile.mkdtemp(prefix="logattn-docs-")
        try:
            for name in ("build", "data", "scripts", "bench"):
                os.symlink(os.path.join(ROOT, name), os.path.join(work, name))
            shim = os.path.join(work, ".bin")
            os.mkdir(shim)
            os.symlink(LOGATTN, os.path.join(shim, "logattn"))
            # mpirun as it runs anywhere: as root, with more ranks than cores, in containers
            # that forbid reading another process's memory (docs/training.md says when a
            # user needs these).
            env = dict(os.environ, PATH=shim + os.pathsep + os.environ["PATH"],
                       PYTHONPATH=os.path.join(ROOT, "build", "python"),
                       OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                       OMPI_MCA_rmaps_base_oversubscribe="1",
                       OMPI_MCA_btl_vader_single_copy_mechanism="none")
            ran = 0
            for page in PAGES:
                for lang, marker, body, line in blocks(read(page)):
                    if lang in NOT_COMMANDS or not marker or marker.group(1) != "run":
                        continue
                    script = apply_overrides(body, marker.group(2))
                    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work,
                                       env=env, capture_output=True, encoding="utf-8",
                                       errors="replace", timeout=600)
                    self.assertEqual(r.returncode, 0,
                                     f"{page}:{line}: the block failed:\n{script}\n"
                                     f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
                    ran += 1
            self.assertGreater(ran, 5)
        finally:
            shutil.rmtree(work)


def apply_overrides(body, spec):
    """body with the marker's options ("; train: --steps 3 --batch 2; generate: -n 5") set on
    every invocation of those commands: replacing the value given, or added."""
    overrides = {}
    for part in spec.split(";"):
        if ":" in part:
            cmd, opts = part.split(":", 1)
            tokens = shlex.split(opts)
            pairs, k = [], 0
            while k < len(tokens):
                value = tokens[k + 1] if k + 1 < len(tokens) and not tokens[k + 1].startswith("-") \
                    else None
                pairs.append((tokens[k], value))
                k += 2 if value is not None else 1
            overrides[cmd.strip()] = pairs
    if not overrides:
        return body
    out = []
    for line in body.replace("\\\n", " ").split("\n"):
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            out.append(line)
            continue
        for k, t in enumerate(tokens):
            if os.path.basename(t) == "logattn" and k + 1 < len(tokens) and \
                    tokens[k + 1] in overrides:
                for option, value in overrides[tokens[k + 1]]:
                    if option in tokens:
                        i = tokens.index(option)
                        if value is not None:
                            tokens[i + 1] = value
                    else:
                        tokens += [option] + ([value] if value is not None else [])
                line = shlex.join(tokens)
                break
        out.append(line)
    return "\n".join(out)


if __name__ == "__main__":
    unittest.main()
