"""The audits of a staged wheel set: GPU targets (gpu.py, reading binaries with gpucode.py
and elf.py), dynamic links (links.py) and JIT coverage (jit.py).

Empty on purpose: Dockerfile.clean runs ``python -m wheelforge.audit.gpu`` and
``wheelforge.audit.links`` in a runtime image with the standard library (and pyelftools)
only, so importing this package must pull in nothing else.
"""
