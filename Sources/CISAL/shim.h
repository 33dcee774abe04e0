#include <isa-l/crc.h>
#include <isa-l/mem_routines.h>
