#pragma once
#include <stddef.h>
#include <stdint.h>

/* Runs libFuzzer's driver (argument parsing, corpus, mutation) over `callback`. SwiftPM makes
   an executable's entry point <Module>_main; each fuzz target defines it and calls this. */
int tessera_fuzz_main(int argc, char **argv, int (*callback)(const uint8_t *data, size_t size));
