print("smolconv")
