/* SPDX-License-Identifier: Apache-2.0 */
/* Force-included into every sovcloud translation unit: functions that are easy to misuse
 * (unbounded copies, non-reentrant time conversion) become compile errors. Use snprintf,
 * sov_buf_*, strtok_r, gmtime_r and localtime_r instead. */
#ifndef SOV_BANNED_H
#define SOV_BANNED_H

#define SOV_BANNED(func) sorry_##func##_is_banned_in_sovcloud

#undef strcpy
#define strcpy(a, b) SOV_BANNED(strcpy)
#undef strcat
#define strcat(a, b) SOV_BANNED(strcat)
#undef sprintf
#define sprintf(...) SOV_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) SOV_BANNED(vsprintf)
#undef strtok
#define strtok(a, b) SOV_BANNED(strtok)
#undef gmtime
#define gmtime(t) SOV_BANNED(gmtime)
#undef localtime
#define localtime(t) SOV_BANNED(localtime)

#endif
