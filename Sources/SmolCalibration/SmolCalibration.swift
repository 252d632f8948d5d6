// Calibration lives here (see issue 8).
import CHDF5
import SmolEngine
