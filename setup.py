"""Build driver: setup.py only runs CMake (pybind11 module ``asd._C``).

Environment:
  ASD_BUILD_CUDA = auto | on | off   (default auto: build the CUDA kernels when nvcc is found)
  ASD_BUILD_TYPE = Release | Debug   (default Release, -O3)
  ASD_CUDA_ARCHS = "90;80"            (default: sm_90 and sm_80 — H100/H200 and A100)
  ASD_BUILD_DIR  = a CMake build folder (default: setuptools' build_temp/cmake; `make` sets build/temp/cmake)
If the build fails the package still installs and runs on its numpy/torch twins,
and says so once at import (asd._ext).
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        # ASD_BUILD_DIR: one CMake folder for the editable install and `make build`, so the second is incremental
        build_dir = Path(os.environ.get("ASD_BUILD_DIR") or Path(self.build_temp) / "cmake").resolve()
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = os.environ.get("ASD_BUILD_TYPE", "Release")
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DASD_BUILD_CUDA={os.environ.get('ASD_BUILD_CUDA', 'auto')}",
            f"-DASD_CUDA_ARCHS={os.environ.get('ASD_CUDA_ARCHS', '90;80')}",
        ]
        jobs = str(os.cpu_count() or 2)
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), *args], check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--config", cfg, "-j", jobs], check=True)


setup(
    ext_modules=[CMakeExtension("asd._C")],
    cmdclass={"build_ext": CMakeBuild},
)
