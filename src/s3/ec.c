/* SPDX-License-Identifier: Apache-2.0 */
/* Erasure coding of object data into shards across drives (ISA-L Reed-Solomon, CRC32C). */
#include "ec.h"
