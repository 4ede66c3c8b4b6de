{
  "targets": [
    {
      "target_name": "grok_kernels",
      "sources": [
        "src/engines/fast/native/binding.cc",
        "src/engines/fast/native/pool.cc",
        "src/engines/fast/native/gemm.cc",
        "src/engines/fast/native/kernels.cc",
        "src/engines/fast/native/adam.cc"
      ],
      "cflags!": ["-fno-exceptions", "-O2", "-O0"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++1y", "-std=gnu++14", "-O2", "-O0"],
      "cflags": ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-pthread"],
      "cflags_cc": ["-O3", "-march=native", "-std=c++17", "-fexceptions", "-ffp-contract=off", "-fno-math-errno", "-pthread"],
      "ldflags": ["-pthread"],
      "defines": ["NAPI_VERSION=8"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CFLAGS": ["-O3", "-ffp-contract=off"]
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17", "/O2", "/fp:precise"] }
      }
    }
  ]
}
