/* STAND-IN (see README.md): the TFLM library's main header; the sketch's main file needs nothing from it. */
#pragma once
