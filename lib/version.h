/* version.h — the suite's version, printed by every tool's --version and
 * recorded as "producer" in stream metadata. */
#ifndef RV_VERSION_H
#define RV_VERSION_H
#define RV_VERSION "0.1.0"
#endif
