"""Networks: prototxt conversion between the layers' C++ and Python forms."""
