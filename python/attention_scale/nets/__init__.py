"""Networks: the paper's nets as prototxt, their initial weights, and form conversion.

    builder      NetSpec builder: DeepLab-LargeFOV branches per scale, merges, attention head,
                 E-Supv losses; train / test / deploy forms; C++ or Python layer form
    backbones    the per-scale network (VGG-16 DeepLab-LargeFOV, or a small configurable one)
    naming       scale suffixes and shared parameter names (the CONTRACT's names)
    variants     the paper's variants and their folders under prototxt/
    solver       the training schedule as solver prototxt
    generate     writes / checks every variant's files (tools/generate_prototxt.py)
    vgg16_init   DeepLab-LargeFOV initial weights from VGG-16 (tools/init_from_vgg16.py)
    convert      C++ <-> Python layer form of any prototxt (tools/convert_net.py)
"""
