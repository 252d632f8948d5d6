// LoRA training lives here (see issue 7).
import SmolEngine
