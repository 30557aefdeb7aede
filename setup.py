"""Builds logattn's Python extension (_logattn) with the project's CMake build; the package
metadata is in pyproject.toml. CMAKE_ARGS passes extra CMake options, e.g.
CMAKE_ARGS="-DLOGATTN_NATIVE=OFF" for a wheel that runs on any x86-64 CPU (the default
compiles for the building machine's instruction set)."""
import glob
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        configure = ["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                     "-DLOGATTN_TESTS=OFF", "-DLOGATTN_PYTHON=ON",
                     f"-DPython3_EXECUTABLE={sys.executable}"]
        configure += shlex.split(os.environ.get("CMAKE_ARGS", ""))
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", build, "--target", "_logattn", "--parallel",
                        str(os.cpu_count() or 1)], check=True)
        built = glob.glob(os.path.join(build, "python", "logattn", "_logattn*.so"))
        if len(built) != 1:
            raise RuntimeError(f"the CMake build made {built} instead of one _logattn module")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(built[0], target)


setup(ext_modules=[CMakeExtension("logattn._logattn")], cmdclass={"build_ext": CMakeBuild})
