"""The book's lesson helpers: demonstrations, teaching figures and toy experiments.

One module per topic, each serving the chapters named in its docstring. They
import the pipeline (``skullstrip_lib.*``); the pipeline never imports them.
A function belongs here when a chapter needs it to *show* something; it
belongs in the pipeline when a user of the pipeline (the ``skullstrip``
command, an instructor's script) calls it to *do* something.

========================  ==========================================  ========
module                    what it holds                               chapters
========================  ==========================================  ========
``notebook``              profiles, Colab, the chapters' data,        all
                          the model a chapter uses, student edition
``mri``                   relaxation, spin echo, inversion recovery   1
``dataset_tour``          folder trees, mask volumes, leakage checks  2
``bias``                  simulated bias fields and their measures    3
``grids``                 grid boxes, mask round trips, zoom figures  4
``intensity``             white stripe, the 0-255 rescale, spreads    5
``unet_anatomy``          the source article's network, layer tables  6
``training_lab``          toy losses, learning-rate sweeps, Adam      7
``evaluation_lab``        scores in three spaces, seen subjects       8, 9
``drift``                 controlled drift and test-time remedies     10
``baseline``              a classical brain mask (BET's idea)         11
``checks``                the "build it yourself" exercises' checks:  all
                          the student's function against the library
========================  ==========================================  ========
"""
