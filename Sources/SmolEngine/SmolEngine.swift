import SmolTensor
